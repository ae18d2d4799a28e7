"""Schema changes for admins: add the worker-recovery objects, create or drop an opt-in index.
Each is a preview (what will change, a fingerprint) and an apply of that fingerprint, acting
once through worker_admin/operations/ (recovery_objects.py, indexes.py); a second apply of one
fingerprint gets 409 with the first apply's `audit_entry_id`."""

from __future__ import annotations

from typing import Annotated, Literal

from ninja import Router
from pydantic import Field

from worker_admin.api.auth import WriterToken
from worker_admin.api.common import VIA, Refusal, detail, refuse, user_of
from worker_admin.api.schemas import Fingerprint, Reason, Strict
from worker_admin.operations import claims, recovery_objects
from worker_admin.operations import indexes as index_operation
from worker_admin.operations.errors import AlreadyUsed, Refused

router = Router(tags=["maintenance"], auth=WriterToken(maintenance=True))
IndexName = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[a-z_]+$")]


class RecoveryObjectsApply(Strict):
    fingerprint: Fingerprint
    reason: Reason = ""


class IndexBody(Strict):
    name: IndexName
    action: Literal["create", "drop"] = "create"


class IndexApply(IndexBody):
    fingerprint: Fingerprint
    reason: Reason = ""


def _refused(request, action: str, exc: Refused, data: dict):
    """The operation's sentence and status, audited as rejected; a used fingerprint names the
    entry of the apply that ran."""
    refuse(request, action, Refusal(exc.status, str(exc)), data)
    extra = {}
    if isinstance(exc, AlreadyUsed) and exc.entry is not None:
        extra["audit_entry_id"] = exc.entry.pk
    return detail(str(exc), exc.status, **extra)


@router.post("/maintenance/recovery-objects/preview", summary="Preview adding recovery objects")
def preview_recovery_objects(request):
    """The objects adding the worker-recovery extension will create (a 0.18 Node schema)."""
    try:
        shown = recovery_objects.preview(user_of(request))
    except Refused as exc:
        return _refused(request, recovery_objects.ACTION, exc, {})
    return {
        "schema": shown.schema,
        "summary": shown.summary,
        "objects": shown.objects,
        "warnings": shown.warnings,
        "fingerprint": shown.token,
        "expires_in_seconds": claims.MAX_AGE,
    }


@router.post("/maintenance/recovery-objects/apply", summary="Add the recovery objects")
def apply_recovery_objects(request, body: RecoveryObjectsApply):
    """Creates what the preview listed, once, with its audit entry in the same transaction."""
    try:
        result = recovery_objects.apply(
            user_of(request), body.fingerprint, via=VIA, reason=body.reason
        )
    except Refused as exc:
        return _refused(request, recovery_objects.ACTION, exc, {"reason": body.reason})
    return {
        "schema": result.schema,
        "added": result.added,
        "summary": result.summary,
        "audit_entry_id": result.audit_entry_id,
    }


@router.post("/maintenance/indexes/preview", summary="Preview creating or dropping an index")
def preview_index(request, body: IndexBody):
    """The SQL, the index's state before -> after, its estimated size and its write cost."""
    try:
        shown = index_operation.preview(user_of(request), body.name, body.action)
    except Refused as exc:
        return _refused(request, f"index_{body.action}", exc, body.model_dump())
    return {
        "name": shown.name,
        "action": shown.action,
        "sql": shown.sql,
        "before": shown.before,
        "after": shown.after,
        "estimated_rows": shown.rows,
        "estimated_bytes": shown.estimated_bytes,
        "helps": shown.helps,
        "write_cost": shown.write_cost,
        "warnings": shown.warnings,
        "summary": shown.summary,
        "fingerprint": shown.token,
        "expires_in_seconds": claims.MAX_AGE,
    }


@router.post("/maintenance/indexes/apply", summary="Create or drop an index")
def apply_index(request, body: IndexApply):
    """Builds (or drops) CONCURRENTLY, once: a "started" entry, then "done" or "failed"
    (`ok` false and `error` with PostgreSQL's message, status 200: the apply ran)."""
    data = body.model_dump(exclude={"fingerprint"})
    try:
        digest = index_operation.request_digest(body.name, body.action)
        result = index_operation.apply(
            user_of(request), body.fingerprint, via=VIA, reason=body.reason, digest=digest
        )
    except Refused as exc:
        return _refused(request, f"index_{body.action}", exc, data)
    return {
        "name": result.name,
        "action": result.action,
        "ok": result.ok,
        "error": result.error,
        "summary": result.summary,
        "started_entry_id": result.started_entry_id,
        "audit_entry_id": result.audit_entry_id,
    }
