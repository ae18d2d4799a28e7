"""Recovery and fleet subcommands: cleanup, force-unlock, sweep-stale-workers, queues, workers."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from worker_admin import audit
from worker_admin.catalog import queue_report
from worker_admin.cli.common import os_user, require_configured_schema
from worker_admin.cli.output import table
from worker_admin.cli.parsing import UsageError, parse_duration
from worker_admin.fleet import fleet
from worker_admin.operations import cleanup as cleanup_operation
from worker_admin.operations import force_unlock as force_unlock_operation
from worker_admin.operations import sweep as sweep_operation
from worker_admin.operations.errors import Refused
from worker_admin.recovery import CleanupTask
from worker_admin.schema import capabilities
from worker_admin.utils import WorkerUtils

CLEANUP_TASKS = tuple(task.value for task in CleanupTask)


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _seconds(value) -> float | None:
    return value.total_seconds() if value is not None else None


def parse_cleanup_tasks(values: list[str] | None) -> list[CleanupTask]:
    """Cleanup task names as the Rust CLI spells them; none given means all three."""
    tasks = []
    for value in values or []:
        if value not in CLEANUP_TASKS:
            raise UsageError(
                f"Unknown cleanup task {value!r}: use one or more of {', '.join(CLEANUP_TASKS)}."
            )
        tasks.append(CleanupTask(value))
    return list(dict.fromkeys(tasks))


def cleanup(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    """Preview and apply at once (the shell has no confirmation step), through the same
    operation as the page and the API; deleting failed jobs needs --reason."""
    tasks = parse_cleanup_tasks(options["tasks"])
    reason = (options.get("reason") or "").strip()
    if CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS in (tasks or list(CleanupTask)) and not reason:
        raise UsageError(
            "Give --reason to delete permanently failed jobs; it goes in the audit log."
        )
    actor = os_user()
    try:
        shown = cleanup_operation.preview(actor, tasks, (), reason, utils=utils)
        result = cleanup_operation.apply(actor, shown.token, via=audit.AuditEntry.Via.CLI)
    except Refused as exc:
        if exc.status == 400:
            raise UsageError(str(exc)) from None
        raise CommandError(str(exc)) from None
    message = f"Cleanup: {result.summary}."
    if shown.warnings:
        message += "\n" + "\n".join(shown.warnings)
    return {
        "tasks": list(result.tasks),
        "deleted_job_ids": result.deleted_job_ids,
        "changed_since_preview": result.stale_job_ids,
        "deleted_task_identifiers": result.task_identifiers,
        "deleted_queue_names": result.queue_names,
        "warnings": list(shown.warnings),
        "summary": result.summary,
        "audit_entry_id": result.audit_entry_id,
        "message": message,
    }


def _refused(exc: Refused):
    """A refusal from the operation: bad input is a usage error, the rest a command error."""
    if exc.status == 400:
        return UsageError(str(exc))
    return CommandError(str(exc))


def _rows(shown) -> list[dict]:
    return [
        {
            "id": row.id,
            "task_identifier": row.task,
            "locked_by": row.locked_by,
            "plan": row.plan,
            "superseded": row.superseded,
            "replaced_by": row.replaced_by,
            "changes": [f"{c.column}: {c.before} -> {c.after}" for c in row.changes],
        }
        for row in shown.rows
    ]


def _released(result) -> dict:
    return {
        "changed_ids": list(result.changed_ids),
        "skipped_held_by_a_worker": list(result.held_ids),
        "changed_since_preview": list(result.stale_ids),
        "gone": list(result.gone_ids),
        "audit_entry_id": result.audit_entry_id,
    }


def force_unlock(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    """Preview and apply at once (the shell has no confirmation step), through the same
    operation as the page and the API: only the locks read by the preview are released."""
    given = [value.strip() for value in options["worker_ids"] or []]
    if not given:
        raise UsageError("Give at least one worker id.")
    if "" in given:
        raise UsageError("A worker id must not be empty.")
    actor = os_user()
    reason = options.get("reason") or ""
    try:
        shown = force_unlock_operation.preview(actor, given, reason, utils=utils)
        result = force_unlock_operation.apply(
            actor, shown.token, via=audit.AuditEntry.Via.CLI, reason_required=False
        )
    except Refused as exc:
        raise _refused(exc) from None
    return {
        "worker_ids": shown.worker_ids,
        "jobs_unlocked": list(result.changed_ids),
        "queues_unlocked": list(result.queues_unlocked),
        "summary": result.summary,
        "warnings": list(shown.warnings),
        "message": f"Force-unlock: {result.summary}.",
    } | _released(result)


def sweep_stale_workers(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    """The dry run is the operation's preview; without --dry-run the same preview is applied
    at once (pinned jobs only, once, audited)."""
    threshold = parse_duration(options["sweep_threshold"])
    delay = parse_duration(options["recovery_delay"])
    if threshold.total_seconds() <= 0:
        raise UsageError("--sweep-threshold must be longer than zero.")
    dry_run = options["dry_run"]
    include_node = options["include_node_lock_holders"]
    actor = os_user()
    reason = options.get("reason") or ""
    try:
        shown = sweep_operation.preview(actor, threshold, delay, include_node, reason, utils=utils)
        result = None
        if not dry_run:
            result = sweep_operation.apply(
                actor, shown.token, via=audit.AuditEntry.Via.CLI, reason_required=False
            )
    except Refused as exc:
        if str(exc) == sweep_operation.LOCK_BUSY:
            return _lock_busy(dry_run)
        raise _refused(exc) from None
    summary = result.summary if result else f"dry run: would {shown.summary}"
    jobs = _rows(shown)
    lines = [f"Sweep: {summary}."]
    lines += [f"  {worker}: {why}" for worker, why in shown.workers]
    lines += [f"  left alone {worker}: {why}" for worker, why in shown.excluded]
    if jobs:
        keys = ("id", "task_identifier", "locked_by", "plan")
        lines += ["", table(keys, [[job[key] for key in keys] for job in jobs])]
    return {
        "dry_run": dry_run,
        "lock_busy": False,
        "worker_ids": result.worker_ids if result else shown.worker_ids,
        "reasons": dict(shown.workers),
        "excluded": dict(shown.excluded),
        "job_count": len(shown.job_ids),
        "superseded_count": shown.superseded_count,
        "jobs": jobs,
        "counts_by_task": [list(c) for c in shown.counts],
        "summary": summary,
        "message": lines[0],
        "text": "\n".join(lines),
    } | (_released(result) if result else {})


def _lock_busy(dry_run: bool) -> dict:
    message = f"Sweep: {sweep_operation.LOCK_BUSY}"
    return {
        "dry_run": dry_run,
        "lock_busy": True,
        "worker_ids": [],
        "summary": sweep_operation.LOCK_BUSY,
        "message": message,
        "text": message,
    }


QUEUE_KEYS = ("queue_name", "ready", "scheduled", "locked", "failed", "retrying", "total")


def queues(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    require_configured_schema(utils)
    report = queue_report(utils.alias)
    rows = [
        {
            "queue_name": queue.name,
            **{key: getattr(queue.counts, key) for key in QUEUE_KEYS[1:]},
            "oldest_ready_age_seconds": _seconds(queue.oldest_ready_age),
            "locked_by": queue.locked_by,
            "locked_at": _iso(queue.locked_at),
            "lock_age_seconds": _seconds(queue.lock_age),
            "lock_is_suspect": queue.lock_is_suspect,
        }
        for queue in report.queues
    ]
    keys = (*QUEUE_KEYS, "locked_by", "locked_at", "lock_is_suspect")
    text = table(keys, [[row[key] for key in keys] for row in rows]) if rows else "No queues."
    if report.truncated:
        text += f"\n(showing the first {len(rows)} queues)"
    return {
        "now": _iso(report.now),
        "queues": rows,
        "count": len(rows),
        "truncated": report.truncated,
        "text": text,
    }


HOLDER_KEYS = ("id", "kind", "registered", "stale", "jobs_held", "queues_held", "oldest_lock_at")


def workers(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    threshold = parse_duration(options["threshold"])
    if threshold.total_seconds() <= 0:
        raise UsageError("--threshold must be longer than zero.")
    require_configured_schema(utils)
    caps = capabilities(utils.alias, utils.schema)
    if caps.problem is not None:
        raise CommandError(caps.problem)
    result = fleet(utils.alias, threshold, has_workers_table=caps.has_workers_table)
    holders = [
        {
            "id": holder.id,
            "kind": holder.kind,
            "registered": holder.registered,
            "stale": holder.stale,
            "jobs_held": holder.jobs_held,
            "queues_held": holder.queues_held,
            "oldest_lock_at": _iso(holder.oldest_lock_at),
            "oldest_lock_age_seconds": _seconds(holder.oldest_lock_age),
        }
        for holder in result.holders
    ]
    registered = (
        None
        if result.workers is None
        else [
            {
                "id": worker.id,
                "started_at": _iso(worker.started_at),
                "last_heartbeat_at": _iso(worker.last_heartbeat_at),
                "heartbeat_age_seconds": _seconds(worker.heartbeat_age),
                "stale": worker.stale,
                "jobs_held": worker.jobs_held,
                "queues_held": worker.queues_held,
            }
            for worker in result.workers
        ]
    )
    sections = [
        "Lock holders",
        table(HOLDER_KEYS, [[h[key] for key in HOLDER_KEYS] for h in holders])
        if holders
        else "(none)",
    ]
    if registered is not None:
        keys = ("id", "last_heartbeat_at", "stale", "jobs_held", "queues_held")
        sections += [
            "",
            "Registered workers",
            table(keys, [[w[key] for key in keys] for w in registered]) if registered else "(none)",
        ]
    return {
        "now": _iso(result.now),
        "threshold_seconds": threshold.total_seconds(),
        "holders": holders,
        "registered_workers": registered,
        "text": "\n".join(sections),
    }
