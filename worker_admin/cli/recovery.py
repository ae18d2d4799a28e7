"""Recovery and fleet subcommands: cleanup, force-unlock, sweep-stale-workers, queues, workers."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from worker_admin import audit
from worker_admin.catalog import queue_report
from worker_admin.cli.common import os_user, record, require_configured_schema
from worker_admin.cli.output import table
from worker_admin.cli.parsing import UsageError, parse_duration
from worker_admin.fleet import fleet
from worker_admin.operations import cleanup as cleanup_operation
from worker_admin.operations.errors import Refused
from worker_admin.recovery import CleanupTask, SweepStaleWorkersOptions
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


def force_unlock(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    ids = list(dict.fromkeys(value.strip() for value in options["worker_ids"] or []))
    if not ids:
        raise UsageError("Give at least one worker id.")
    if "" in ids:
        raise UsageError("A worker id must not be empty.")
    result = utils.force_unlock_workers(ids)
    record(
        utils,
        "force_unlock",
        parameters={"worker_ids": ids, "queues_unlocked": result.queues_unlocked},
        requested_ids=result.jobs_unlocked,
        changed_ids=result.jobs_unlocked,
        summary=result.summary,
    )
    return {
        "worker_ids": ids,
        "jobs_unlocked": list(result.jobs_unlocked),
        "queues_unlocked": list(result.queues_unlocked),
        "summary": result.summary,
        "message": f"Force-unlock: {result.summary}.",
    }


def sweep_stale_workers(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    threshold = parse_duration(options["sweep_threshold"])
    delay = parse_duration(options["recovery_delay"])
    if threshold.total_seconds() <= 0:
        raise UsageError("--sweep-threshold must be longer than zero.")
    dry_run = options["dry_run"]
    sweep_options = SweepStaleWorkersOptions(
        sweep_threshold=threshold,
        recovery_delay=delay,
        dry_run=dry_run,
        include_node_lock_holders=options["include_node_lock_holders"],
    )
    result = utils.sweep_stale_workers(sweep_options)
    parameters = {
        "sweep_threshold": options["sweep_threshold"],
        "recovery_delay": options["recovery_delay"],
        "include_node_lock_holders": options["include_node_lock_holders"],
    }
    if not dry_run and not result.lock_busy:
        record(
            utils,
            "sweep",
            parameters=parameters | {"worker_ids": result.worker_ids},
            requested_ids=[job.id for job in result.jobs],
            changed_ids=result.changed_job_ids,
            summary=result.summary,
        )
    jobs = [
        {
            "id": job.id,
            "task_identifier": job.task_identifier,
            "locked_by": job.locked_by,
            "locked_at": _iso(job.locked_at),
            "attempts": job.attempts,
            "attempts_after": job.attempts_after,
            "run_at": _iso(job.run_at),
            "run_at_after": _iso(job.run_at_after),
            "superseded": job.superseded,
            "replaced_by": job.replaced_by,
            "plan": job.plan,
        }
        for job in result.jobs
    ]
    lines = [f"Sweep: {result.summary}."]
    lines += [f"  {worker}: {reason}" for worker, reason in result.reasons.items()]
    lines += [f"  left alone {worker}: {reason}" for worker, reason in result.excluded.items()]
    if jobs:
        keys = ("id", "task_identifier", "locked_by", "attempts_after", "run_at_after", "plan")
        lines += ["", table(keys, [[job[key] for key in keys] for job in jobs])]
    return {
        "dry_run": dry_run,
        "lock_busy": result.lock_busy,
        "worker_ids": list(result.worker_ids),
        "reasons": dict(result.reasons),
        "excluded": dict(result.excluded),
        "recovered_count": result.recovered_count,
        "superseded_count": result.superseded_count,
        "jobs": jobs,
        "summary": result.summary,
        "message": lines[0],
        "text": "\n".join(lines),
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
