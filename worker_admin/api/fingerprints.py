"""The maintenance writes' fingerprint (sweep, force-unlock): what a preview showed, in a form
the apply can check. Job actions, adds and cleanup use worker_admin/operations/claims.py instead.

A preview hashes everything its outcome depends on: the request's values (action, options,
target) and the state of every row it would touch (for jobs: id, revision, updated_at, lock,
run_at, attempts, max_attempts, priority, key, task, queue). The apply recomputes that hash from
the database as it is now; any difference (a job added, removed, rescheduled, locked, or an
option changed) refuses the apply with 409 and changes nothing.

The hash travels signed, with the user it was issued to, its kind, a one-time nonce and a
timestamp: a fingerprint is valid for PREVIEW_MAX_AGE, for its user and kind only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from django.core import signing
from django.core.serializers.json import DjangoJSONEncoder

SALT = "worker_admin.api.fingerprint"
PREVIEW_MAX_AGE = 30 * 60  # seconds


class FingerprintMismatch(Exception):
    """409: the apply does not match a live preview; the text says why, for the caller."""


class BadFingerprint(ValueError):
    """400: not a fingerprint this server issued."""


def digest(kind: str, values: Any) -> str:
    text = json.dumps({"kind": kind, "values": values}, sort_keys=True, cls=DjangoJSONEncoder)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def issue(kind: str, user, values: Any) -> str:
    body = {"k": kind, "u": user.pk, "d": digest(kind, values), "n": secrets.token_hex(8)}
    return signing.dumps(body, salt=SALT)


def check(fingerprint: str, kind: str, user, values: Any) -> str:
    """The fingerprint's nonce when it matches `values` as computed now; else an exception."""
    try:
        body = signing.loads(fingerprint, salt=SALT, max_age=PREVIEW_MAX_AGE)
    except signing.SignatureExpired:
        raise FingerprintMismatch(
            "This preview is more than 30 minutes old: nothing was changed; preview again."
        ) from None
    except signing.BadSignature:
        raise BadFingerprint(
            "The fingerprint is not one this server issued: send the one the preview returned."
        ) from None
    if not isinstance(body, dict) or body.get("k") != kind:
        raise BadFingerprint("This fingerprint belongs to another kind of preview.")
    if body.get("u") != user.pk:
        raise FingerprintMismatch(
            "This fingerprint was issued to another user: nothing was changed; preview again."
        )
    if not hmac.compare_digest(str(body.get("d", "")), digest(kind, values)):
        raise FingerprintMismatch(
            "What this would change differs from the preview (jobs were added, removed or "
            "changed since, or an option differs): nothing was changed; preview again."
        )
    return str(body.get("n", ""))
