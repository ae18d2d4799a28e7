"""Maintenance for admins: the stale-worker sweep (its dry run is the preview), force-unlock and
cleanup, each as a preview and an apply with a fingerprint, audited like the Maintenance page.

The sweep's fingerprint covers the dead workers and the jobs they hold, not the reasons (whose
ages move every second); force-unlock's covers every lock the workers hold; cleanup's is a
stored confirmation (operations/cleanup.py) pinning every row it will delete, applied once.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from django.conf import settings
from ninja import Router

from worker_admin import audit
from worker_admin.api import fingerprints, serialize
from worker_admin.api.auth import WriterToken
from worker_admin.api.common import (
    VIA,
    Refusal,
    audit_safe,
    detail,
    refuse,
    schema_problem,
    user_of,
    write_permission,
)
from worker_admin.api.fingerprints import BadFingerprint, FingerprintMismatch
from worker_admin.api.schemas import (
    CleanupApply,
    CleanupBody,
    ForceUnlockApply,
    ForceUnlockBody,
    SweepApply,
    SweepBody,
)
from worker_admin.fleet import FRESH_HEARTBEAT
from worker_admin.models import Job, JobQueue, Worker
from worker_admin.operations import claims
from worker_admin.operations import cleanup as cleanup_operation
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.recovery import CleanupTask, SweepStaleWorkersOptions, SweepStaleWorkersResult
from worker_admin.schema import capabilities
from worker_admin.stats import database_now
from worker_admin.utils import WorkerUtils, WorkerUtilsError

router = Router(tags=["maintenance"], auth=WriterToken(maintenance=True))
SWEEP, FORCE_UNLOCK, CLEANUP = "sweep", "force_unlock", "cleanup"
PREVIEW_ROWS = 200


def _guard(request) -> None:
    for refusal in (write_permission(request, maintenance=True), schema_problem()):
        if refusal is not None:
            raise refusal


def _submitted(body) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"fingerprint"}, exclude_none=True)


def _refused(request, action: str, body, exc: Exception):
    if isinstance(exc, Refusal):
        refusal = exc
    elif isinstance(exc, FingerprintMismatch):
        refusal = Refusal(409, str(exc))
    else:
        refusal = Refusal(400, str(exc))
    return refuse(request, action, refusal, _submitted(body))


REFUSED = (Refusal, FingerprintMismatch, BadFingerprint, WorkerUtilsError)


def _record(request, action: str, body, **fields) -> audit.AuditEntry:
    return audit.record(
        actor=user_of(request),
        via=VIA,
        action=action,
        outcome="done",
        reason=body.reason.strip(),
        **fields,
    )


# -- sweep ------------------------------------------------------------------------------------


def _sweep_options(body: SweepBody, *, dry_run: bool) -> SweepStaleWorkersOptions:
    return SweepStaleWorkersOptions(
        sweep_threshold=timedelta(minutes=body.threshold_minutes),
        recovery_delay=timedelta(seconds=body.delay_seconds),
        dry_run=dry_run,
        include_node_lock_holders=body.include_node_lock_holders,
    )


def _dry_run(body: SweepBody) -> tuple[SweepStaleWorkersResult, dict[str, Any]]:
    result = WorkerUtils().sweep_stale_workers(_sweep_options(body, dry_run=True))
    if result.lock_busy:
        raise Refusal(409, "Another sweeper holds the sweep lock right now: try again shortly.")
    values = {
        "options": _submitted(body) | {"reason": None},
        "dead": result.worker_ids,
        "excluded": sorted(result.excluded),
        "jobs": [[j.id, j.locked_by, j.locked_at, j.attempts, j.run_at] for j in result.jobs],
    }
    return result, audit_safe(values)


def _sweep_out(result: SweepStaleWorkersResult) -> dict[str, Any]:
    return {
        "summary": result.summary,
        "dry_run": result.dry_run,
        "workers": [{"id": w, "reason": result.reasons[w]} for w in result.worker_ids],
        "excluded": [{"id": w, "reason": why} for w, why in sorted(result.excluded.items())],
        "jobs": [
            {
                "id": j.id,
                "task_identifier": j.task_identifier,
                "locked_by": j.locked_by,
                "locked_at": j.locked_at,
                "attempts": j.attempts,
                "attempts_after": j.attempts_after,
                "run_at": j.run_at,
                "run_at_after": j.run_at_after,
                "superseded": j.superseded,
                "replaced_by": j.replaced_by,
                "plan": j.plan,
            }
            for j in result.jobs
        ],
        "recovered_count": result.recovered_count,
        "superseded_count": result.superseded_count,
    }


@router.post("/maintenance/sweep/preview", summary="Dry run of the stale-worker sweep")
def preview_sweep(request, body: SweepBody):
    """The dead workers (each with its reason), those left alone and why, and the jobs they
    hold with their attempts and run_at after the recovery."""
    try:
        _guard(request)
        result, values = _dry_run(body)
    except REFUSED as exc:
        return _refused(request, SWEEP, body, exc)
    return _sweep_out(result) | {
        "fingerprint": fingerprints.issue(SWEEP, user_of(request), values),
        "expires_in_seconds": fingerprints.PREVIEW_MAX_AGE,
    }


@router.post("/maintenance/sweep/apply", summary="Sweep stale workers")
def apply_sweep(request, body: SweepApply):
    try:
        _guard(request)
        _result, values = _dry_run(body)
        fingerprints.check(body.fingerprint, SWEEP, user_of(request), values)
        result = WorkerUtils().sweep_stale_workers(_sweep_options(body, dry_run=False))
    except REFUSED as exc:
        return _refused(request, SWEEP, body, exc)
    job_ids = [job.id for job in result.jobs]
    entry = _record(
        request,
        SWEEP,
        body,
        parameters=_submitted(body) | {"worker_ids": result.worker_ids},
        requested_ids=job_ids,
        changed_ids=result.changed_job_ids,
        summary=result.summary,
    )
    return _sweep_out(result) | {"audit_entry_id": entry.id}


# -- force-unlock -----------------------------------------------------------------------------


def _worker_ids(body: ForceUnlockBody) -> list[str]:
    ids = list(dict.fromkeys(i.strip() for i in body.worker_ids if i.strip()))
    if not ids:
        raise Refusal(400, "Give at least one worker id.")
    return ids


def _locks(ids: list[str]) -> tuple[Any, Any, dict[str, Any]]:
    alias = settings.WORKER_DATABASE
    jobs = Job.objects.using(alias).filter(locked_by__in=ids)
    queues = JobQueue.objects.using(alias).filter(locked_by__in=ids)
    values = {
        "worker_ids": ids,
        "jobs": [list(r) for r in jobs.order_by("id").values_list("id", "locked_by", "locked_at")],
        "queues": [
            list(r)
            for r in queues.order_by("queue_name").values_list(
                "queue_name", "locked_by", "locked_at"
            )
        ],
    }
    return jobs, queues, audit_safe(values)


@router.post("/maintenance/force-unlock/preview", summary="Preview a force-unlock")
def preview_force_unlock(request, body: ForceUnlockBody):
    """The jobs and queues these worker ids hold, and a warning for any with a fresh
    heartbeat (a live worker would keep running a job that another worker may then take)."""
    try:
        _guard(request)
        ids = _worker_ids(body)
        jobs, queues, values = _locks(ids)
    except REFUSED as exc:
        return _refused(request, FORCE_UNLOCK, body, exc)
    alias = settings.WORKER_DATABASE
    now = database_now(alias)
    fresh = []
    if capabilities().has_workers_table:
        fresh = [
            w.id
            for w in Worker.objects.using(alias).filter(id__in=ids)
            if now - w.last_heartbeat_at < FRESH_HEARTBEAT
        ]
    warnings = [
        f"Worker {w} sent a heartbeat less than a minute ago: it is probably alive, and its "
        "jobs may run twice if unlocked."
        for w in fresh
    ]
    rows = jobs.with_state().select_related("task", "job_queue").order_by("locked_at", "id")
    return {
        "worker_ids": ids,
        "job_count": len(values["jobs"]),
        "jobs": [serialize.job(request, job, with_payload=False) for job in rows[:PREVIEW_ROWS]],
        "queues": [
            {"name": q.queue_name, "locked_by": q.locked_by, "locked_at": q.locked_at}
            for q in queues.order_by("queue_name")
        ],
        "fresh_heartbeats": fresh,
        "warnings": warnings,
        "fingerprint": fingerprints.issue(FORCE_UNLOCK, user_of(request), values),
        "expires_in_seconds": fingerprints.PREVIEW_MAX_AGE,
    }


@router.post("/maintenance/force-unlock/apply", summary="Force-unlock workers")
def apply_force_unlock(request, body: ForceUnlockApply):
    try:
        _guard(request)
        ids = _worker_ids(body)
        _jobs, _queues, values = _locks(ids)
        fingerprints.check(body.fingerprint, FORCE_UNLOCK, user_of(request), values)
        result = WorkerUtils().force_unlock_workers(ids)
    except REFUSED as exc:
        return _refused(request, FORCE_UNLOCK, body, exc)
    entry = _record(
        request,
        FORCE_UNLOCK,
        body,
        parameters={"worker_ids": ids, "queues_unlocked": result.queues_unlocked},
        requested_ids=result.jobs_unlocked,
        changed_ids=result.jobs_unlocked,
        summary=result.summary,
    )
    return {
        "summary": result.summary,
        "jobs_unlocked": result.jobs_unlocked,
        "queues_unlocked": result.queues_unlocked,
        "audit_entry_id": entry.id,
    }


# -- cleanup ----------------------------------------------------------------------------------


def _cleanup_refused(request, body, exc: Refused):
    """A refused cleanup: its sentence and status; a used confirmation names its entry."""
    refuse(request, CLEANUP, Refusal(exc.status, str(exc)), _submitted(body))
    extra = {}
    if isinstance(exc, AlreadyUsed) and exc.entry is not None:
        extra["audit_entry_id"] = exc.entry.pk
    return detail(str(exc), exc.status, **extra)


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
        return _cleanup_refused(request, body, exc)
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
        return _cleanup_refused(request, body, exc)
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
