"""Maintenance for admins: the stale-worker sweep (its dry run is the preview), force-unlock and
cleanup, each as a preview and an apply with a fingerprint, audited like the Maintenance page.

Each fingerprint is a stored confirmation (worker_admin/operations/claims.py) pinning every row
the apply may change (operations/sweep.py, force_unlock.py, cleanup.py), applied once: a second
apply of the same fingerprint, from any face, is 409 with the audit entry that used it.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from django.urls import reverse
from ninja import Router

from worker_admin.api.auth import WriterToken
from worker_admin.api.common import (
    VIA,
    Refusal,
    detail,
    refuse,
    schema_problem,
    user_of,
    write_permission,
)
from worker_admin.api.schemas import (
    CleanupApply,
    CleanupBody,
    ForceUnlockApply,
    ForceUnlockBody,
    SweepApply,
    SweepBody,
)
from worker_admin.operations import claims
from worker_admin.operations import cleanup as cleanup_operation
from worker_admin.operations import force_unlock as force_unlock_operation
from worker_admin.operations import sweep as sweep_operation
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.recovery import CleanupTask

router = Router(tags=["maintenance"], auth=WriterToken(maintenance=True))
SWEEP, FORCE_UNLOCK, CLEANUP = "sweep", "force_unlock", "cleanup"


def _guard(request) -> None:
    for refusal in (write_permission(request, maintenance=True), schema_problem()):
        if refusal is not None:
            raise refusal


def _submitted(body) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"fingerprint"}, exclude_none=True)


def _op_refused(request, action: str, body, exc: Refused):
    """A refused operation: its sentence and status; a used confirmation names its entry
    (409, with its id and the audit log's address)."""
    refuse(request, action, Refusal(exc.status, str(exc)), _submitted(body))
    extra = {}
    if isinstance(exc, AlreadyUsed) and exc.entry is not None:
        extra["audit_entry_id"] = exc.entry.pk
        extra["audit_entry_url"] = reverse("worker_admin:audit") + f"?action={action}"
    return detail(str(exc), exc.status, **extra)


def _rows(shown) -> list[dict[str, Any]]:
    return [
        {
            "id": row.id,
            "task_identifier": row.task,
            "locked_by": row.locked_by,
            "plan": row.plan,
            "superseded": row.superseded,
            "replaced_by": row.replaced_by,
            "changes": [dataclasses.asdict(change) for change in row.changes],
        }
        for row in shown.rows
    ]


def _counts(shown) -> list[dict[str, Any]]:
    return [{"task_identifier": t, "plan": p, "count": n} for t, p, n in shown.counts]


def _released(result) -> dict[str, Any]:
    return {
        "summary": result.summary,
        "changed_ids": result.changed_ids,
        "skipped_held_by_a_worker": result.held_ids,
        "skipped_worker_alive": result.spared_ids,
        "changed_since_preview": result.stale_ids,
        "gone": result.gone_ids,
        "superseded_ids": result.superseded_ids,
        "queues_unlocked": result.queues_unlocked,
        "audit_entry_id": result.audit_entry_id,
    }


# -- sweep ------------------------------------------------------------------------------------


def _sweep_input(body: SweepBody) -> tuple[timedelta, timedelta, bool]:
    return (
        timedelta(minutes=body.threshold_minutes),
        timedelta(seconds=body.delay_seconds),
        body.include_node_lock_holders,
    )


@router.post("/maintenance/sweep/preview", summary="Dry run of the stale-worker sweep")
def preview_sweep(request, body: SweepBody):
    """The dead workers (each with its reason), those left alone and why, and the jobs they
    hold, pinned: first rows with before -> after of each changed column, counts by task. The
    fingerprint applies exactly this, once."""
    try:
        _guard(request)
        shown = sweep_operation.preview(
            user_of(request), *_sweep_input(body), body.reason, index_budget=True
        )
    except Refusal as refusal:
        return refuse(request, SWEEP, refusal, _submitted(body))
    except Refused as exc:
        return _op_refused(request, SWEEP, body, exc)
    return {
        "dry_run": True,
        "summary": shown.summary,
        "input": shown.restated,
        "workers": [{"id": w, "reason": why} for w, why in shown.workers],
        "excluded": [{"id": w, "reason": why} for w, why in shown.excluded],
        "job_count": len(shown.job_ids),
        "job_ids": shown.job_ids[:1000],
        "superseded_count": shown.superseded_count,
        "jobs": _rows(shown),
        "counts_by_task": _counts(shown),
        "queue_names": shown.queue_names,
        "warnings": shown.warnings,
        "fingerprint": shown.token,
        "expires_in_seconds": claims.MAX_AGE,
    }


@router.post("/maintenance/sweep/apply", summary="Sweep stale workers")
def apply_sweep(request, body: SweepApply):
    """The preview's body, its fingerprint and a reason (here or in the preview). Releases
    only the pinned jobs still as previewed; 409 if the values differ or the fingerprint was
    already applied (with the audit entry that used it)."""
    try:
        _guard(request)
        result = sweep_operation.apply(
            user_of(request),
            body.fingerprint,
            reason=body.reason,
            via=VIA,
            digest=sweep_operation.request_digest(*_sweep_input(body)),
        )
    except Refusal as refusal:
        return refuse(request, SWEEP, refusal, _submitted(body))
    except Refused as exc:
        return _op_refused(request, SWEEP, body, exc)
    return _released(result) | {
        "worker_ids": result.worker_ids,
        "spared_workers": result.spared_workers,
    }


# -- force-unlock -----------------------------------------------------------------------------


@router.post("/maintenance/force-unlock/preview", summary="Preview a force-unlock")
def preview_force_unlock(request, body: ForceUnlockBody):
    """The jobs and queues these worker ids hold, pinned, with before -> after, and a warning
    for any with a fresh heartbeat (a live worker would keep running a job that another worker
    may then take)."""
    try:
        _guard(request)
        shown = force_unlock_operation.preview(user_of(request), body.worker_ids, body.reason)
    except Refusal as refusal:
        return refuse(request, FORCE_UNLOCK, refusal, _submitted(body))
    except Refused as exc:
        return _op_refused(request, FORCE_UNLOCK, body, exc)
    return {
        "summary": shown.summary,
        "worker_ids": shown.worker_ids,
        "job_count": len(shown.job_ids),
        "job_ids": shown.job_ids[:1000],
        "jobs": _rows(shown),
        "counts_by_task": _counts(shown),
        "queue_names": shown.queue_names,
        "fresh_heartbeats": shown.fresh,
        "warnings": shown.warnings,
        "fingerprint": shown.token,
        "expires_in_seconds": claims.MAX_AGE,
    }


@router.post("/maintenance/force-unlock/apply", summary="Force-unlock workers")
def apply_force_unlock(request, body: ForceUnlockApply):
    try:
        _guard(request)
        result = force_unlock_operation.apply(
            user_of(request),
            body.fingerprint,
            reason=body.reason,
            via=VIA,
            digest=force_unlock_operation.request_digest(body.worker_ids),
        )
    except Refusal as refusal:
        return refuse(request, FORCE_UNLOCK, refusal, _submitted(body))
    except Refused as exc:
        return _op_refused(request, FORCE_UNLOCK, body, exc)
    return _released(result) | {"jobs_unlocked": result.changed_ids}


# -- cleanup ----------------------------------------------------------------------------------


@router.post("/maintenance/cleanup/preview", summary="Preview a cleanup")
def preview_cleanup(request, body: CleanupBody):
    """What cleanup will delete, pinned: the permanently failed jobs (first rows, counts by
    task), unused task identifiers (minus the keep-list), unused unlocked queues. No tasks given
    means all three. A reason is required when failed jobs are to be deleted."""
    try:
        _guard(request)
        shown = cleanup_operation.preview(
            user_of(request), body.tasks, body.keep_task_identifiers, body.reason
        )
    except Refusal as refusal:
        return refuse(request, CLEANUP, refusal, _submitted(body))
    except Refused as exc:
        return _op_refused(request, CLEANUP, body, exc)
    return {
        "tasks": [task.value for task in shown.tasks],
        "keep_task_identifiers": list(shown.keep_task_identifiers),
        "summary": shown.summary,
        "counts": {
            task.value: count
            for task, count in {
                CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS: len(shown.job_ids),
                CleanupTask.GC_TASK_IDENTIFIERS: len(shown.task_identifiers),
                CleanupTask.GC_JOB_QUEUES: len(shown.queue_names),
            }.items()
            if task in shown.tasks
        },
        "failed_job_ids": shown.job_ids[:1000],
        "rows": [dataclasses.asdict(row) for row in shown.rows],
        "counts_by_task": dict(shown.counts_by_task),
        "task_identifiers": shown.task_identifiers,
        "queue_names": shown.queue_names,
        "warnings": shown.warnings,
        "fingerprint": shown.token,
        "expires_in_seconds": claims.MAX_AGE,
    }


@router.post("/maintenance/cleanup/apply", summary="Clean up")
def apply_cleanup(request, body: CleanupApply):
    """The preview's body plus its fingerprint. Deletes once, only what the preview pinned: a
    job retried or changed since is skipped and counted, one that failed since is not touched.
    409 if the values differ from the preview or the fingerprint was already applied."""
    try:
        _guard(request)
        digest = cleanup_operation.request_digest(
            body.tasks, body.keep_task_identifiers, body.reason
        )
        result = cleanup_operation.apply(user_of(request), body.fingerprint, via=VIA, digest=digest)
    except Refusal as refusal:
        return refuse(request, CLEANUP, refusal, _submitted(body))
    except Refused as exc:
        return _op_refused(request, CLEANUP, body, exc)
    return {
        "summary": result.summary,
        "tasks": list(result.tasks),
        "deleted_job_ids": result.deleted_job_ids,
        "changed_since_preview": result.stale_job_ids,
        "gone": result.gone_job_ids,
        "task_identifiers": result.task_identifiers,
        "queue_names": result.queue_names,
        "audit_entry_id": result.audit_entry_id,
    }
