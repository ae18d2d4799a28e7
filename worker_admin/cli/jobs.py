"""Job subcommands: add, list, show, complete, fail, reschedule, remove."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from worker_admin.cli.common import (
    action_result,
    record,
    record_action,
    require_configured_schema,
)
from worker_admin.cli.output import JOB_ROW_KEYS, job_detail, job_row, table
from worker_admin.cli.parsing import (
    UsageError,
    parse_ids,
    parse_payload,
    parse_run_at,
    parse_state,
    read_payload_file,
)
from worker_admin.models import Job
from worker_admin.redaction import redact
from worker_admin.utils import JobKeyMode, JobSpec, RescheduleJobOptions, RunNow, WorkerUtils

KEY_MODES = {"replace": JobKeyMode.REPLACE, "preserve-run-at": JobKeyMode.PRESERVE_RUN_AT}
KEY_MODES["unsafe-dedupe"] = JobKeyMode.UNSAFE_DEDUPE


def _payload(command: BaseCommand, options: dict):
    """--payload TEXT or --payload-file PATH (`-` reads standard input); not both."""
    if options["payload"] is not None and options["payload_file"] is not None:
        raise UsageError("Give either --payload or --payload-file, not both.")
    if options["payload_file"] is None:
        return parse_payload(options["payload"])
    text = read_payload_file(options["payload_file"], options.get("stdin") or sys.stdin)
    return parse_payload(text, source=f"--payload-file {options['payload_file']!r}")


def add(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    payload = _payload(command, options)
    run_at = parse_run_at(options["run_at"]) if options["run_at"] else None
    mode = options["job_key_mode"]
    if mode is not None and mode not in KEY_MODES:
        raise UsageError(f"Unknown --job-key-mode {mode!r}: use one of {', '.join(KEY_MODES)}.")
    if mode is not None and not options["key"]:
        raise UsageError("--job-key-mode needs --key.")
    spec = JobSpec(
        queue_name=options["queue"],
        run_at=None if isinstance(run_at, RunNow) else run_at,  # "now" is the default
        max_attempts=options["max_attempts"],
        job_key=options["key"],
        job_key_mode=KEY_MODES[mode] if mode else None,
        priority=options["priority"],
        flags=options["flag"] or None,
    )
    job = utils.add_raw_job(options["identifier"], payload, spec)
    summary = f"added job {job.id} ({options['identifier']})"
    record(
        utils,
        "add_job",
        parameters={
            "identifier": options["identifier"],
            "queue": options["queue"],
            "run_at": options["run_at"],
            "max_attempts": options["max_attempts"],
            "key": options["key"],
            "job_key_mode": mode,
            "priority": options["priority"],
            "flags": options["flag"] or [],
        },
        requested_ids=[job.id],
        changed_ids=[job.id],
        summary=summary,
    )
    return {
        "id": job.id,
        "identifier": options["identifier"],
        "queue_name": options["queue"],
        "run_at": job.run_at.isoformat() if job.run_at else None,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "key": job.key,
        "message": f"Added job {job.id} ({options['identifier']}).",
    }


def list_jobs(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    state = parse_state(options["state"])
    limit, offset = options["limit"], options["offset"]
    if limit < 1 or limit > 10_000:
        raise UsageError("--limit must be between 1 and 10000.")
    if offset < 0:
        raise UsageError("--offset must not be negative.")
    require_configured_schema(utils)
    jobs = Job.objects.using(utils.alias).with_state().select_related("task", "job_queue")
    if state is not None:
        jobs = jobs.in_state(state)
    if options["identifier"]:
        jobs = jobs.for_task(options["identifier"])
    if options["queue"]:
        jobs = jobs.in_queue(options["queue"])
    rows = [job_row(job) for job in jobs.order_by("id")[offset : offset + limit]]
    text = (
        table(JOB_ROW_KEYS, [[row[key] for key in JOB_ROW_KEYS] for row in rows])
        if rows
        else "No jobs match."
    )
    return {"jobs": rows, "count": len(rows), "limit": limit, "offset": offset, "text": text}


def show(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    (job_id,) = parse_ids([options["id"]])
    require_configured_schema(utils)
    job = (
        Job.objects.using(utils.alias)
        .with_state()
        .select_related("task", "job_queue")
        .filter(id=job_id)
        .first()
    )
    if job is None:
        raise CommandError(f"No job has the id {job_id}.")
    detail = job_detail(job)
    _redact_payload(utils, detail, reveal=options["reveal"])
    width = max(len(key) for key in detail)
    text = "\n".join(f"{key.ljust(width)}  {_show_value(value)}" for key, value in detail.items())
    return {"job": detail, "text": text}


def _redact_payload(utils: WorkerUtils, detail: dict, *, reveal: bool) -> None:
    """REDACT_PAYLOAD_PATHS applies here as on the job page; --reveal shows all, audited."""
    shown, paths = redact(detail["payload"])
    if not paths:
        return
    if reveal:
        record(
            utils,
            "reveal_payload",
            parameters={"paths": paths},
            requested_ids=[detail["id"]],
            summary=f"revealed {len(paths)} redacted field(s) of job {detail['id']}",
        )
        return
    detail["payload"] = shown
    detail["redacted_paths"] = paths


def _show_value(value) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def complete(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    ids = parse_ids(options["ids"])
    result = utils.complete_jobs(ids)
    record_action(utils, "complete", result)
    return action_result(result, "complete")


def fail(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    ids = parse_ids(options["ids"])
    reason = (options["reason"] or "").strip()
    if not reason:
        raise UsageError("Give a --reason for failing the jobs.")
    result = utils.permanently_fail_jobs(ids, reason)
    record_action(utils, "fail", result, reason=reason)
    return action_result(result, "fail")


def reschedule(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    ids = parse_ids(options["ids"])
    if options["now"] and options["run_at"]:
        raise UsageError("Give either --now or --run-at, not both.")
    run_at = (
        parse_run_at("now" if options["now"] else options["run_at"])
        if (options["now"] or options["run_at"])
        else None
    )
    changes = RescheduleJobOptions(
        run_at=run_at,
        priority=options["priority"],
        attempts=options["attempts"],
        max_attempts=options["max_attempts"],
    )
    if changes == RescheduleJobOptions():
        raise UsageError(
            "Nothing to change: give --now, --run-at, --priority, --attempts or --max-attempts."
        )
    result = utils.reschedule_jobs(ids, changes)
    record_action(
        utils,
        "reschedule",
        result,
        parameters={
            "run_at": "now" if isinstance(run_at, RunNow) else options["run_at"],
            "priority": options["priority"],
            "attempts": options["attempts"],
            "max_attempts": options["max_attempts"],
        },
    )
    return action_result(result, "reschedule")


def remove(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    key = options["key"]
    result = utils.remove_job(key)
    job = result.removed or result.detached
    outcome = "removed" if result.removed else "detached" if result.detached else "not_found"
    record(
        utils,
        "remove",
        parameters={"key": key},
        requested_ids=[job.id] if job else [],
        changed_ids=[job.id] if job else [],
        summary=result.summary,
    )
    return {
        "key": key,
        "outcome": outcome,
        "job_id": job.id if job else None,
        "summary": result.summary,
        "message": result.summary[0].upper() + result.summary[1:] + ".",
    }
