"""Confirmations: a preview is stored, pinned, and consumed once, in the database.

`issue()` stores what a preview showed (the operation's input, the pinned targets with each
row's revision and updated_at, a fingerprint of both) as one `Confirmation` row in the console's
own schema, and returns a signed token naming it. The token is what every face hands back:
the page's hidden field, the API's `fingerprint`, the command line's own apply.

Acting once. `claim()` runs inside the transaction that acts: it locks the confirmation's row
(SELECT ... FOR UPDATE) and returns it with its progress. The first part of an apply marks it
used in that same transaction. A second request with the same token, from any face or process,
waits on the row lock until the first commits, then sees it used and is refused with
AlreadyUsed; if the first rolled back, the confirmation is still unused and the second acts.
Long actions keep their progress (parts done, totals) on the same row, so two "continue"
requests do successive parts, never the same part twice.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, models
from django.utils import timezone

from worker_admin import databases
from worker_admin.operations.errors import (
    AlreadyUsed,
    BadConfirmation,
    Differs,
    Expired,
    OtherActor,
    Stale,
)

SALT = "worker_admin.operations.confirmation"
MAX_AGE = 30 * 60  # seconds a preview stays confirmable
KEEP = timedelta(days=2)  # used and expired confirmations are deleted after this


class Confirmation(models.Model):
    """One preview that can be applied once (the console's schema, never the worker's)."""

    nonce = models.CharField(max_length=32, unique=True)
    kind = models.CharField(max_length=40)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    actor_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    request = models.JSONField(encoder=DjangoJSONEncoder)
    pinned = models.JSONField(default=list)
    fingerprint = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)
    progress = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="wa_confirmation_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.nonce}"


def fingerprint(values: Any) -> str:
    text = json.dumps(values, sort_keys=True, cls=DjangoJSONEncoder, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _actor_fields(actor) -> dict[str, Any]:
    user = actor if hasattr(actor, "get_username") and getattr(actor, "pk", None) else None
    name = user.get_username() if user is not None else str(actor or "unknown")
    return {"actor": user, "actor_name": name[:150]}


def _same_actor(row: Confirmation, actor) -> bool:
    fields = _actor_fields(actor)
    if fields["actor"] is not None:
        return row.actor_id == fields["actor"].pk
    return row.actor_id is None and row.actor_name == fields["actor_name"]


def issue(kind: str, actor, request: Any, pinned: list, digest: str) -> str:
    """Store a preview and return its token (signed, so a forged one is told apart)."""
    Confirmation.objects.filter(created_at__lt=timezone.now() - KEEP).delete()
    nonce = secrets.token_hex(16)
    Confirmation.objects.create(
        nonce=nonce,
        kind=kind,
        request=request,
        pinned=pinned,
        fingerprint=digest,
        **_actor_fields(actor),
    )
    # The worker database is signed in: a preview made on one database never acts on another.
    return signing.dumps({"c": nonce, "k": kind, "d": databases.current().name}, salt=SALT)


def nonce_of(token: str, kind: str, max_age: int = MAX_AGE) -> str:
    """The nonce a token names, or BadConfirmation/Stale saying why not."""
    try:
        body = signing.loads(token or "", salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise Expired(
            "This preview is more than 30 minutes old: nothing was changed; preview again."
        ) from None
    except signing.BadSignature:
        raise BadConfirmation(
            "This confirmation is not valid: it is not one this server issued; preview again."
        ) from None
    if not isinstance(body, dict) or body.get("k") != kind:
        raise BadConfirmation("This confirmation belongs to another kind of preview.")
    here = databases.current().name
    if body.get("d", settings.GRAPHILE_WORKER_NAME) != here:
        raise BadConfirmation(
            f"This preview was made on the worker database {body.get('d')!r}, not on {here!r}: "
            "nothing was changed; confirm it there, or preview again here."
        )
    return str(body.get("c", ""))


def claim(
    token: str, kind: str, actor, digest: str | None = None, *, max_age: int = MAX_AGE
) -> Confirmation:
    """Lock the confirmation's row for the current transaction (on the console's database) and
    check it belongs to `actor` and, given `digest`, to the same values. Does not mark it used:
    the caller does, with `mark_used`, in the transaction that acts."""
    nonce = nonce_of(token, kind, max_age)
    row = (
        Confirmation.objects.using(DEFAULT_DB_ALIAS)
        .select_for_update()
        .filter(nonce=nonce, kind=kind)
        .first()
    )
    if row is None:
        raise Stale("This preview has expired or was never stored: preview again.")
    if not _same_actor(row, actor):
        raise OtherActor(
            "This confirmation was issued to another user: nothing was changed; preview again."
        )
    if digest is not None and digest != row.fingerprint:
        raise Differs(
            "The request differs from what was previewed (a value or the target changed): "
            "nothing was changed; preview again."
        )
    return row


def refuse_if_used(row: Confirmation) -> None:
    if row.used_at is not None:
        raise AlreadyUsed(first_entry(row))


def first_entry(row: Confirmation):
    from worker_admin.audit import AuditEntry

    entry_id = (row.progress or {}).get("first_entry")
    if entry_id is None:
        return None
    return AuditEntry.objects.filter(pk=entry_id).first()


def mark_used(row: Confirmation, progress: dict) -> None:
    if row.used_at is None:
        row.used_at = timezone.now()
    row.progress = progress
    row.save(update_fields=["used_at", "progress"])
