"""A user's permissions in one statement instead of Django's two.

Every page, and every poll of an open tab, asks for the viewer's role (worker_admin/roles.py).
Django's ModelBackend answers `has_perm` with two queries per request: the user's own
permissions, then their groups'. `prime()` reads the same set with one UNION and leaves it
where ModelBackend keeps it for the rest of the request (`user._perm_cache`), so every later
`has_perm` in that request is answered from memory, as before. On a console that twenty people
poll every few seconds, the second round trip and its ORM compilation were a fair share of a
poll's cost. Nothing outlives the request: a change of role counts on the next request, in
every process.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router


def _sql() -> str:
    user_model = get_user_model()
    user_perms = user_model.user_permissions.through._meta.db_table
    user_groups = user_model.groups.through._meta.db_table
    group_perms = Group.permissions.through._meta.db_table
    return f"""
        SELECT ct.app_label, p.codename
          FROM {Permission._meta.db_table} p
          JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id
         WHERE p.id IN (SELECT up.permission_id FROM {user_perms} up WHERE up.user_id = %s
                        UNION
                        SELECT gp.permission_id FROM {group_perms} gp
                          JOIN {user_groups} ug ON ug.group_id = gp.group_id
                         WHERE ug.user_id = %s)
    """


def prime(user) -> None:
    """Load an active, ordinary user's permissions in one query, where ModelBackend looks first.

    Superusers (every permission), inactive users (none) and anonymous users are left to
    ModelBackend, which answers them without this set."""
    if hasattr(user, "_perm_cache") or not user.is_active or user.is_anonymous:
        return
    if user.is_superuser:
        return
    with connections[router.db_for_read(Permission)].cursor() as cursor:
        cursor.execute(_sql(), [user.pk, user.pk])
        user._perm_cache = {f"{app}.{codename}" for app, codename in cursor}
