"""Confirmations for the maintenance writes still here (the Maintenance page's installs)
until they move onto `worker_admin.operations` like the job actions, adds, cleanup, the sweep
and force-unlock did.

A preview issues a signed token with a one-time nonce kept in the session; `redeem_token` checks
it matches what was previewed and uses it up. Two requests sent at the same moment both find the
nonce, so `acting_once` also claims the confirmation in the database: under an advisory lock
derived from it, it checks that no audit entry records it yet, in the transaction that acts.
The second request waits for the first to commit, finds its entry and is refused with
ConfirmationUsed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.core import signing
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.utils import timezone

from worker_admin import audit
from worker_admin.operations.errors import Refused
from worker_admin.operations.rejections import record_rejection

__all__ = [
    "ActionRefused",
    "ConfirmationUsed",
    "PreviewExpired",
    "acting_once",
    "issue_token",
    "record_rejection",
    "redeem_token",
]

TOKEN_SALT = "worker_admin.actions.confirm"
TOKEN_MAX_AGE = 30 * 60  # seconds a preview stays valid
SESSION_KEY = "worker_admin_action_nonces"
# The advisory lock namespace for claiming a confirmation ("GCON"); the second key is its hash.
CLAIM_LOCK_NAMESPACE = 1195593550
# How far back to look for an earlier use of a confirmation: it cannot be redeemed later than
# TOKEN_MAX_AGE after its preview, so twice that covers every use of it.
CLAIM_WINDOW = timedelta(seconds=2 * TOKEN_MAX_AGE)

logger = logging.getLogger(__name__)


class ActionRefused(Refused):
    """The request cannot be previewed or confirmed; the text says why, for the user."""


class PreviewExpired(ActionRefused):
    pass


class ConfirmationUsed(ActionRefused):
    """Another request already acted on this confirmation (its audit entry says when)."""

    def __init__(self, entry) -> None:
        when = timezone.localtime(entry.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        super().__init__(
            f"This confirmation was already used: the action ran once, at {when} (audit entry "
            f"#{entry.pk}, {entry.outcome}). Nothing was done again."
        )
        self.entry = entry


def issue_token(fingerprint: str, session) -> str:
    """A signed confirmation for what a preview showed, usable once (its nonce is in the
    session until redeemed)."""
    nonce = secrets.token_hex(8)
    pending = session.get(SESSION_KEY, [])[-50:]  # a few open previews per user, not unbounded
    session[SESSION_KEY] = [*pending, nonce]
    return signing.dumps({"f": fingerprint, "n": nonce}, salt=TOKEN_SALT)


def redeem_token(token: str, fingerprint: str, session) -> str:
    """Check the confirmation matches its preview and has not been used; use it up.

    Returns its nonce: pass it to `execute(confirmation=...)` or `acting_once`, which make the
    "once" hold for requests that arrive together too."""
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise PreviewExpired("This preview is more than 30 minutes old: preview again.") from None
    except signing.BadSignature:
        raise ActionRefused("This confirmation is not valid: preview the action again.") from None
    if data.get("f") != fingerprint:
        raise ActionRefused(
            "The action differs from what was previewed (a value was changed): preview again."
        )
    pending = session.get(SESSION_KEY, [])
    if data.get("n") not in pending:
        raise ActionRefused("This confirmation was already used: the action ran once.")
    session[SESSION_KEY] = [n for n in pending if n != data["n"]]
    return data["n"]


def _lock(key: str) -> None:
    """Until this transaction ends, requests claiming the same key wait for each other."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [CLAIM_LOCK_NAMESPACE, key]
        )


@contextmanager
def acting_once(
    confirmation: str, *, actor, via: str, action: str, parameters: dict | None = None
) -> Iterator[None]:
    """One transaction (on the console's database) for a single-step confirmed action: the
    caller does the work and writes its audit entry inside, with parameters["confirmation"] set
    to `confirmation`. Of two requests with the same confirmation one acts; the other waits for
    it and gets ConfirmationUsed. A database failure inside is recorded as a "failed" entry
    (or logged, when the console's database is the one that failed)."""
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            _lock(confirmation)
            earlier = (
                audit.AuditEntry.objects.filter(
                    action=action,
                    created_at__gte=timezone.now() - CLAIM_WINDOW,
                    parameters__confirmation=confirmation,
                )
                .order_by("pk")
                .first()
            )
            if earlier is not None:
                raise ConfirmationUsed(earlier)
            yield
    except DatabaseError as exc:
        try:
            audit.record(
                actor=actor,
                via=via,
                action=action,
                outcome="failed",
                parameters=(parameters or {}) | {"confirmation": confirmation},
                error=_describe(exc),
                summary="failed; rolled back, nothing changed",
            )
        except DatabaseError as audit_exc:
            logger.error(
                "%s by %s failed and could not be audited (%s); it was rolled back. Error: %s",
                action,
                getattr(actor, "username", actor),
                _describe(audit_exc),
                _describe(exc),
            )
        raise


def _describe(exc: Exception) -> str:
    return audit.first_line(exc)[:500]
