"""Console users: create one, change its role, grant or take away superuser status; previewed
(before -> after), applied once, audited with before and after in the same transaction.

    shown = preview(actor, UserChange("bob", role="operator"))
    result = apply(actor, shown.token, via="cli", password=None)   # a new user's password

Managing users needs the admin role; granting or taking away superuser status needs a superuser
(operations/permissions.py). A console admin who is not a superuser cannot change a superuser.
The preview pins the account as it was; if it changed before the apply, nothing is done (Stale).
Passwords never enter the confirmation row: the apply takes one, or generates it for a new user.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import DEFAULT_DB_ALIAS, transaction

from worker_admin import account_audit
from worker_admin.operations import claims
from worker_admin.operations.errors import Refused, Stale
from worker_admin.operations.permissions import (
    Forbidden,
    is_shell,
    require_admin,
    require_superuser,
)
from worker_admin.roles import ADMIN, ROLE_PERMISSIONS, ensure_groups, role_of

KIND = "user"
DOING = "managing users"


@dataclass(frozen=True)
class UserChange:
    username: str
    role: str | None = None  # viewer, operator, admin; None keeps it
    superuser: bool | None = None  # None keeps it
    set_password: bool = False  # a password is given at apply (never stored in the preview)


@dataclass(frozen=True)
class Preview:
    token: str
    username: str
    created: bool
    before: dict
    after: dict
    warnings: list[str]

    @property
    def summary(self) -> str:
        if self.created:
            return f"will create user {self.username} as {self.after['role']}"
        changes = [
            f"{key} {self.before.get(key)!r} -> {value!r}"
            for key, value in self.after.items()
            if key != "password" and self.before.get(key) != value
        ]
        if self.after.get("password"):
            changes.append("password changed")
        return f"will change user {self.username}: " + ("; ".join(changes) or "nothing")


@dataclass(frozen=True)
class Result:
    username: str
    created: bool
    role: str
    password: str  # the password set, when the apply generated or was given one
    summary: str
    audit_entry_ids: list[int]


def _image(user) -> dict:
    """What a user change can touch, as the preview shows it."""
    if user is None:
        return {}
    return {
        "role": role_of(user),
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": sorted(user.groups.values_list("name", flat=True)),
    }


def _after(user, change: UserChange) -> dict:
    before = _image(user)
    superuser = before.get("is_superuser", False) if change.superuser is None else change.superuser
    role = change.role or before.get("role") or "viewer"
    groups = [g for g in before.get("groups", []) if g not in ROLE_PERMISSIONS] + [role]
    return {
        "role": ADMIN if superuser else role,
        "is_staff": role == ADMIN or superuser,  # the admin site needs is_staff
        "is_superuser": superuser,
        "groups": sorted(groups),
    }


def _check(actor, user, change: UserChange) -> None:
    require_admin(actor, DOING)
    name = change.username or ""
    if not name.strip() or len(name) > 150 or "\x00" in name:
        raise Refused("The user name must be 1 to 150 characters.")
    if change.role is not None and change.role not in ROLE_PERMISSIONS:
        raise Refused(f"Choose a role among {', '.join(ROLE_PERMISSIONS)}.")
    if user is None and change.role is None:
        raise Refused("Give a role for a new user.")
    now_super = bool(user and user.is_superuser)
    if change.superuser is not None and change.superuser != now_super:
        require_superuser(actor, "granting superuser" if change.superuser else "taking superuser")
    if now_super and not is_shell(actor) and not actor.is_superuser:
        raise Forbidden(
            f"{name} is a superuser: only a superuser may change a superuser account. "
            "Nothing was changed."
        )
    stays_super = now_super if change.superuser is None else change.superuser
    if stays_super and change.role not in (None, ADMIN):
        raise Refused(
            f"{name} is a superuser, who has every permission whatever the role; take "
            "superuser status away first (a superuser can, on the admin site). Nothing was "
            "changed."
        )


def preview(actor, change: UserChange) -> Preview:
    """Read-only: the account before -> after, stored as a confirmation."""
    user = get_user_model().objects.filter(username=change.username).first()
    _check(actor, user, change)
    before, after = _image(user), _after(user, change)
    if change.set_password or user is None:
        after = after | {"password": "(set)" if user is None else "(changed)"}
    request = {
        "username": change.username,
        "role": change.role,
        "superuser": change.superuser,
        "set_password": change.set_password,
    }
    pinned = [{"user_id": user.pk if user else None, "before": before}]
    token = claims.issue(KIND, actor, request, pinned, claims.fingerprint(request))
    warnings = []
    if after["is_superuser"] and not before.get("is_superuser"):
        warnings.append("A superuser has every permission and can grant superuser to others.")
    return Preview(token, change.username, user is None, before, after, warnings)


def apply(actor, confirmation: str, *, via: str = "web", password: str | None = None) -> Result:
    """Make the previewed change, once, if the account is still as previewed."""
    ensure_groups()
    require_admin(actor, DOING)  # the role first: a forged token from a viewer is a 403
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        row = claims.claim(confirmation, KIND, actor)
        claims.refuse_if_used(row)
        change = UserChange(**row.request)
        pinned = row.pinned[0]
        model = get_user_model()
        user = model.objects.select_for_update().filter(username=change.username).first()
        if (user.pk if user else None) != pinned["user_id"] or _image(user) != pinned["before"]:
            raise Stale(
                f"User {change.username} changed since the preview: nothing was changed; "
                "preview again."
            )
        _check(actor, user, change)  # the actor's own role may have changed too
        after = _after(user, change)
        created = user is None
        with account_audit.acting_as(actor, via), account_audit.recorded() as entries:
            user = user or model(username=change.username)
            if created or change.set_password:
                password = password or secrets.token_urlsafe(12)
                user.set_password(password)
            user.is_staff, user.is_superuser = after["is_staff"], after["is_superuser"]
            user.save()
            role = change.role or pinned["before"].get("role") or "viewer"
            others = user.groups.exclude(name__in=list(ROLE_PERMISSIONS))
            user.groups.set([*others, Group.objects.get(name=role)])
        verb = "created" if created else "updated"
        summary = f"{verb} user {user.get_username()} as {after['role']}"
        claims.mark_used(
            row, {"first_entry": entries[0].pk if entries else None, "summary": summary}
        )
    shown_password = password if created or change.set_password else ""
    return Result(
        user.get_username(),
        created,
        after["role"],
        shown_password or "",
        summary,
        [entry.pk for entry in entries],
    )
