"""The console's three roles, as Django groups (created by migration 0003).

viewer: reads everything, changes nothing. operator: also acts on jobs. admin: also runs
maintenance (sweeps, force-unlocks, cleanups, migrations) and manages users. Superusers have
every permission. READ_ONLY=1 turns every write off for everyone, at the server.
"""

from __future__ import annotations

from django.conf import settings

from worker_admin.user_permissions import prime

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ACT_ON_JOBS = "worker_admin.act_on_jobs"
RUN_MAINTENANCE = "worker_admin.run_maintenance"

ROLE_PERMISSIONS = {
    VIEWER: ["worker_admin.view_auditentry"],
    OPERATOR: ["worker_admin.view_auditentry", "worker_admin.act_on_jobs"],
    ADMIN: [
        "worker_admin.view_auditentry",
        "worker_admin.act_on_jobs",
        "worker_admin.run_maintenance",
        "auth.view_user",
        "auth.add_user",
        "auth.change_user",
        "auth.delete_user",
    ],
}


RANK = {VIEWER: 0, OPERATOR: 1, ADMIN: 2}


def database_allows(role: str) -> bool:
    """Whether the current worker database lets anyone act with `role` (its `max_role` in
    GRAPHILE_WORKER_DATABASES: a database that operators may only read says "viewer")."""
    from worker_admin.databases import current

    return RANK[current().max_role] >= RANK[role]


def can_act_on_jobs(user) -> bool:
    prime(user)
    return not settings.READ_ONLY and user.has_perm(ACT_ON_JOBS) and database_allows(OPERATOR)


def can_run_maintenance(user) -> bool:
    prime(user)
    return not settings.READ_ONLY and user.has_perm(RUN_MAINTENANCE) and database_allows(ADMIN)


READ_ONLY_REFUSAL = (
    "The console is read-only (READ_ONLY is set on the server): nothing can be changed through it."
)


def refusal(user, *, needs: str, doing: str) -> str:
    """Why `user` may not do this, in one sentence that names the role it needs: read-only
    mode, or "Running maintenance needs the admin role; you are … with the operator role"."""
    if settings.READ_ONLY:
        return READ_ONLY_REFUSAL
    if RANK[role_of(user)] >= RANK[needs] and not database_allows(needs):
        from worker_admin.databases import current

        return (
            f"{doing[:1].upper()}{doing[1:]} needs the {needs} role; the worker database "
            f"{current().name!r} allows at most the {current().max_role} role (its max_role)."
        )
    return (
        f"{doing[:1].upper()}{doing[1:]} needs the {needs} role; you are signed in as "
        f"{user.get_username()} with the {role_of(user)} role. Ask an admin."
    )


def may_manage_users(user) -> bool:
    """Admins (and superusers): the ones Django's admin site lets in (staff, with the user
    permissions). Read-only mode does not hide the link: the admin site writes console users,
    never jobs."""
    return user.is_active and user.is_staff and role_of(user) == ADMIN


def role_here(user) -> str:
    """`role_of(user)`, capped by the current worker database's `max_role`."""
    from worker_admin.databases import current

    role, cap = role_of(user), current().max_role
    return role if RANK[role] <= RANK[cap] else cap


def role_of(user) -> str:
    prime(user)
    if user.is_superuser or user.has_perm(RUN_MAINTENANCE):
        return ADMIN
    if user.has_perm(ACT_ON_JOBS):
        return OPERATOR
    return VIEWER


def ensure_groups() -> None:
    """Create the role groups with their permissions if missing (migration 0003 does this
    once; a database flushed afterwards, as transactional tests do, needs it again)."""
    from django.contrib.auth.models import Group, Permission

    for role, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for name in names:
            app_label, codename = name.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
