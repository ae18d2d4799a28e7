"""Every change to a console account goes into the audit log, whatever made it.

Users (created, changed, deleted), their staff and superuser flags, their password (that it
changed, never the hash), their groups (the console's roles) and permissions, groups and their
permissions, and API tokens (issued, revoked, deleted): each becomes one entry with who, via
what (the admin site, the console, the API, the command line) and the values before -> after.

Model signals catch every path that goes through the ORM: Django's admin site,
`manage.py console_user` and `console_token`, Django's own `createsuperuser` and
`changepassword`, a shell. The entry is written inside the signal, so inside the change's
transaction whenever the change has one: the admin site's writes run in one
(`worker_admin.middleware.AdminSiteMiddleware`), as do the console's commands and the token
functions, so a failed audit write rolls the change back. QuerySet.update() and raw SQL send no
signal; nothing in the console changes an account that way.

Who acted comes from `acting_as` (the middleware sets the signed-in user for each request; the
commands set the OS user). Without it, as in `createsuperuser`, the actor is the OS user and
the path the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from worker_admin import audit
from worker_admin.api.tokens import ApiToken
from worker_admin.audit import AuditEntry

# The audited columns of each model; anything else (last_login, last_used_at) is bookkeeping.
USER_FIELDS = (
    "username",
    "first_name",
    "last_name",
    "email",
    "is_active",
    "is_staff",
    "is_superuser",
    "password",
)
GROUP_FIELDS = ("name",)
TOKEN_FIELDS = ("name", "user_id", "revoked_at")

# The password's hash never leaves the users table: entries say only that it was set or changed.
PASSWORD_SET, PASSWORD_UNUSABLE, PASSWORD_CHANGED, PASSWORD_HIDDEN = (
    "(set)",
    "(unusable)",
    "(changed)",
    "(hidden)",
)

_acting: ContextVar[tuple[Any, Any] | None] = ContextVar("account_actor", default=None)
_recorded: ContextVar[list | None] = ContextVar("account_recorded", default=None)


@contextmanager
def acting_as(actor: Any, via: str | Callable[[], str]) -> Iterator[None]:
    """Changes to accounts inside this block are audited as made by `actor` (a user or a
    name) through `via`; either may be a callable, called when a change happens."""
    token = _acting.set((actor, via))
    try:
        yield
    finally:
        _acting.reset(token)


@contextmanager
def recorded() -> Iterator[list]:
    """The entries written inside this block, in order (operations/tokens.py and users.py name
    the first one in their confirmation, for a second apply's "already used" answer)."""
    entries: list = []
    token = _recorded.set(entries)
    try:
        yield entries
    finally:
        _recorded.reset(token)


def os_user() -> str:
    from worker_admin.cli.common import os_user as login_name

    return login_name()


def _who() -> tuple[Any, str]:
    current = _acting.get()
    if current is None:
        return os_user(), AuditEntry.Via.CLI
    actor, via = current
    return (actor() if callable(actor) else actor), (via() if callable(via) else via)


def _record(action: str, summary: str, parameters: dict, *, deleted_user_pk=None) -> None:
    actor, via = _who()
    if deleted_user_pk is not None and getattr(actor, "pk", None) == deleted_user_pk:
        actor = actor.get_username()  # the entry cannot point at a row deleted in its transaction
    entry = audit.record(
        actor=actor,
        via=via,
        action=action,
        outcome=AuditEntry.Outcome.DONE,
        parameters=parameters,
        summary=summary,
    )
    bag = _recorded.get()
    if bag is not None:
        bag.append(entry)


# -- values, as an entry shows them -------------------------------------------------------------


def _shown(field: str, value: Any) -> Any:
    if field == "password":
        return PASSWORD_UNUSABLE if not value or value.startswith("!") else PASSWORD_SET
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _image(instance: Model, fields: tuple[str, ...]) -> dict[str, Any]:
    return {field: getattr(instance, field) for field in fields}


def _changes(before: dict, after: dict) -> tuple[dict, dict]:
    """Only what differs, as shown: (before, after)."""
    old, new = {}, {}
    for field, value in after.items():
        if before.get(field) == value:
            continue
        if field == "password":
            old[field], new[field] = PASSWORD_HIDDEN, PASSWORD_CHANGED
        else:
            old[field], new[field] = _shown(field, before.get(field)), _shown(field, value)
    return old, new


def _sentence(old: dict, new: dict) -> str:
    parts = []
    for field, value in new.items():
        if field == "password":
            parts.append("password changed")
        else:
            parts.append(f"{field} {old[field]!r} -> {value!r}")
    return "; ".join(parts)


def _all_shown(image: dict) -> dict:
    return {field: _shown(field, value) for field, value in image.items()}


# -- users, groups and tokens: created, changed, deleted ---------------------------------------


@dataclass(frozen=True)
class Audited:
    model: type[Model]
    fields: tuple[str, ...]
    noun: str  # "user", "group", "API token"
    key: str  # in action names: create_user, change_group, issue_api_token
    label: Callable[[Model], str]


def _user_label(user) -> str:
    return user.get_username()


def _token_owner(token: ApiToken) -> str:
    # Kept at pre_delete: a token deleted with its user can no longer load the user.
    return token.__dict__.get("_audit_owner") or token.user.get_username()


def _token_label(token: ApiToken) -> str:
    return f"{token} of {_token_owner(token)}"


def _remember_before(sender, instance, update_fields=None, audited: Audited = None, **kwargs):
    if instance.pk is None:
        return
    if update_fields is not None and not set(update_fields) & set(audited.fields):
        return  # a login's last_login, a token's last use: nothing to audit, nothing to read
    instance._audit_before = (
        audited.model._default_manager.filter(pk=instance.pk).values(*audited.fields).first()
    )


def _after_save(sender, instance, created, audited: Audited = None, **kwargs):
    before = instance.__dict__.pop("_audit_before", None)
    after = _image(instance, audited.fields)
    label, is_token = audited.label(instance), audited.model is ApiToken
    if created:
        _record(
            f"issue_{audited.key}" if is_token else f"create_{audited.key}",
            f"{'issued' if is_token else 'created'} {audited.noun} {label}",
            {**_identity(audited, instance), "before": {}, "after": _all_shown(after)},
        )
        return
    if before is None:
        return  # only unaudited columns were saved
    old, new = _changes(before, after)
    if not new:
        return
    revoked = is_token and set(new) == {"revoked_at"} and before["revoked_at"] is None
    _record(
        "revoke_api_token" if revoked else f"change_{audited.key}",
        f"{'revoked' if revoked else 'changed'} {audited.noun} {label}: {_sentence(old, new)}",
        {**_identity(audited, instance), "before": old, "after": new},
    )


def _identity(audited: Audited, instance) -> dict:
    if audited.model is ApiToken:
        return {
            "token_id": instance.pk,
            "name": instance.name,
            "prefix": instance.prefix,
            "user": _token_owner(instance),
        }
    if audited.model is Group:
        return {"group_id": instance.pk, "group": instance.name}
    return {"user_id": instance.pk, "user": instance.get_username()}


def _before_delete(sender, instance, audited: Audited = None, **kwargs):
    # Memberships go with the row (without signals): keep them for the entry.
    if audited.model is Group:
        instance._audit_members = sorted(
            instance.user_set.values_list(get_user_model().USERNAME_FIELD, flat=True)
        )
    elif audited.model is ApiToken:
        instance._audit_owner = instance.user.get_username()
    else:
        instance._audit_groups = sorted(instance.groups.values_list("name", flat=True))


def _after_delete(sender, instance, audited: Audited = None, **kwargs):
    shown = _all_shown(_image(instance, audited.fields))
    if hasattr(instance, "_audit_members"):
        shown["members"] = instance._audit_members
    if hasattr(instance, "_audit_groups"):
        shown["groups"] = instance._audit_groups
    is_user = audited.model is get_user_model()
    _record(
        f"delete_{audited.key}",
        f"deleted {audited.noun} {audited.label(instance)}",
        {**_identity(audited, instance), "before": shown, "after": {}},
        deleted_user_pk=instance.pk if is_user else None,
    )


# -- memberships and permissions (many-to-many) -------------------------------------------------


@dataclass(frozen=True)
class Relation:
    owner: type[Model]  # whose list changes: a user's groups, a user's or a group's permissions
    field: str
    action: str
    label_paths: tuple[str, ...]  # what names a related row, joined with "."


def _owner_ids(relation: Relation, instance, reverse: bool, pk_set) -> list:
    if not reverse:
        return [instance.pk]
    if pk_set is not None:
        return sorted(pk_set)
    return list(
        relation.owner._default_manager.filter(**{relation.field: instance}).values_list(
            "pk", flat=True
        )
    )


def _lists(relation: Relation, owner_ids: list) -> dict[Any, list[str]]:
    paths = [f"{relation.field}__{path}" for path in relation.label_paths]
    found: dict[Any, list[str]] = {pk: [] for pk in owner_ids}
    rows = relation.owner._default_manager.filter(pk__in=owner_ids).values_list("pk", *paths)
    for pk, *parts in rows:
        if parts[0] is not None:
            found[pk].append(".".join(str(part) for part in parts))
    return {pk: sorted(names) for pk, names in found.items()}


def _owner_name(owner) -> str:
    return owner.get_username() if hasattr(owner, "get_username") else owner.name


def _membership_changed(sender, instance, action, reverse, pk_set, relation=None, **kwargs):
    if action.startswith("pre_"):
        owners = _owner_ids(relation, instance, reverse, pk_set)
        instance._audit_m2m = (owners, _lists(relation, owners))
        return
    owners, before = instance.__dict__.pop("_audit_m2m", ([], {}))
    after = _lists(relation, owners)
    for owner in relation.owner._default_manager.filter(pk__in=owners).order_by("pk"):
        old, new = before.get(owner.pk, []), after.get(owner.pk, [])
        if old == new:
            continue
        noun = "user" if relation.owner is not Group else "group"
        _record(
            relation.action,
            f"{relation.field} of {noun} {_owner_name(owner)}: {old} -> {new}",
            {f"{noun}_id": owner.pk, noun: _owner_name(owner), "before": old, "after": new},
        )


# -- wiring -------------------------------------------------------------------------------------


def _receivers() -> Iterator[tuple[Any, Callable, type[Model], str]]:
    """(signal, receiver, sender, dispatch_uid) for everything audited."""
    user_model = get_user_model()
    for audited in (
        Audited(user_model, USER_FIELDS, "user", "user", _user_label),
        Audited(Group, GROUP_FIELDS, "group", "group", lambda group: group.name),
        Audited(ApiToken, TOKEN_FIELDS, "API token", "api_token", _token_label),
    ):
        for signal, receiver in (
            (pre_save, _remember_before),
            (post_save, _after_save),
            (pre_delete, _before_delete),
            (post_delete, _after_delete),
        ):
            uid = f"account_audit.{receiver.__name__}.{audited.model.__name__}"
            yield signal, _bound(receiver, audited=audited), audited.model, uid
    permission = ("content_type__app_label", "codename")
    for relation in (
        Relation(user_model, "groups", "change_user_groups", ("name",)),
        Relation(user_model, "user_permissions", "change_user_permissions", permission),
        Relation(Group, "permissions", "change_group_permissions", permission),
    ):
        through = getattr(relation.owner, relation.field).through
        uid = f"account_audit.{relation.action}"
        yield m2m_changed, _bound(_membership_changed, relation=relation), through, uid


def connect() -> None:
    """Connect the receivers (WorkerAdminConfig.ready); dispatch_uid keeps it to once."""
    for signal, receiver, sender, uid in _receivers():
        signal.connect(receiver, sender=sender, weak=False, dispatch_uid=uid)


def disconnect() -> None:
    """For the test suite only: most tests set up users as fixtures and count the job entries
    of the audit log; the account audit's own tests connect it again (tests/conftest.py)."""
    for signal, _receiver, sender, uid in _receivers():
        signal.disconnect(sender=sender, dispatch_uid=uid)


def _bound(receiver, **bound):
    def receive(*args, **kwargs):
        return receiver(*args, **kwargs, **bound)

    return receive
