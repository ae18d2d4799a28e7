"""Who may make a maintenance or account change: checked by the operation, whichever face asks.

A signed-in user (page, API token, admin site) needs the admin role, and READ_ONLY refuses
everyone at the server. The command line acts as the OS user, who already holds the database's
credentials (it could run the SQL itself): it is not asked for a role, and its writes are audited
under that name. Granting superuser needs a superuser, from every face: the command line is
refused it (Django's `createsuperuser` is the way there, audited as the OS user).
"""

from __future__ import annotations

from django.conf import settings

from worker_admin.operations.errors import Refused
from worker_admin.roles import (
    ADMIN,
    READ_ONLY_REFUSAL,
    RUN_MAINTENANCE,
    database_allows,
    refusal,
)


class Forbidden(Refused):
    """The actor may not do this; the sentence names the role needed."""

    status = 403


def is_shell(actor) -> bool:
    """The command line: a name (the OS user), not a console account."""
    return not hasattr(actor, "get_username")


def require_admin(actor, doing: str) -> None:
    """Raise Forbidden unless `actor` may run maintenance ("… needs the admin role")."""
    if is_shell(actor):
        return
    if settings.READ_ONLY:
        raise Forbidden(READ_ONLY_REFUSAL)
    if not actor.is_active or not actor.has_perm(RUN_MAINTENANCE):
        raise Forbidden(refusal(actor, needs=ADMIN, doing=doing))


def require_maintenance(actor, doing: str) -> None:
    """`require_admin`, and the current worker database must allow the admin role (max_role)."""
    require_admin(actor, doing)
    if not is_shell(actor) and not database_allows(ADMIN):
        raise Forbidden(refusal(actor, needs=ADMIN, doing=doing))


def require_superuser(actor, doing: str) -> None:
    """Granting or taking away superuser status: only a superuser, never the command line."""
    if is_shell(actor):
        raise Forbidden(
            f"{doing[:1].upper()}{doing[1:]} needs a superuser; the command line acts as the OS "
            "user. Use `manage.py createsuperuser` (audited). Nothing was changed."
        )
    if not actor.is_superuser:
        raise Forbidden(
            f"{doing[:1].upper()}{doing[1:]} needs a superuser; you are signed in as "
            f"{actor.get_username()}, who is not one. Nothing was changed."
        )
