"""Job subcommands: add, list, show, complete, fail, reschedule, remove.

The writes go through their operations (worker_admin/operations), like the pages' and the
API's: the command previews (pinning the jobs) and applies at once, and the operation writes
the audit entry in the transaction that acts.
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from worker_admin.audit import AuditEntry
from worker_admin.cli.common import (
    action_outcome,
    os_user,
    record,
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
from worker_admin.operations import adding, job_actions
from worker_admin.operations.errors import NotFound, Refused
from worker_admin.redaction import redact
from worker_admin.utils import (
    JobKeyMode,
    JobSpec,
    RawJobSpec,
    RescheduleJobOptions,
    RunNow,
    WorkerUtils,
)

CLI = AuditEntry.Via.CLI

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
    require_configured_schema(utils)
    raw = RawJobSpec(options["identifier"], payload, spec)
    spec.validate()  # InvalidJobSpec: a usage error, before anything is stored
    actor = os_user()
    try:
        shown = adding.preview_job(actor, raw)
        job = adding.apply_job(actor, shown.token, raw, via=CLI).jobs[0]
    except adding.Failed as exc:
        raise CommandError(str(exc)) from None
    except Refused as exc:
        raise UsageError(str(exc)) from None
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


def _act(utils: WorkerUtils, kind, ids, verb: str, *, reason: str = "", options=None) -> dict:
    """A job action on ids through its operation: previewed (pinned) and applied at once."""
    require_configured_schema(utils)
    actor = os_user()
    try:
        request = job_actions.build_request(
            kind, job_actions.Target(ids=tuple(ids)), reason=reason, options=options
        )
        shown = job_actions.preview(actor, request)
        outcome = job_actions.apply(actor, shown.token, reason=request.reason, via=CLI)
    except NotFound:
        return _nothing_found(ids, verb)
    except Refused as exc:
        raise UsageError(str(exc)) from None
    return action_outcome(outcome, verb)


def _nothing_found(ids, verb: str) -> dict:
    summary = f"changed 0 of {len(ids):,}; {len(ids):,} gone"
    return {
        "requested": list(ids),
        "changed": [],
        "skipped_locked": [],
        "missing": list(ids),
        "summary": summary,
        "message": f"{verb.capitalize()}: {summary}.",
    }


def complete(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    ids = parse_ids(options["ids"])
    return _act(utils, job_actions.ActionKind.COMPLETE, ids, "complete")


def fail(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    ids = parse_ids(options["ids"])
    reason = (options["reason"] or "").strip()
    if not reason:
        raise UsageError("Give a --reason for failing the jobs.")
    return _act(utils, job_actions.ActionKind.FAIL, ids, "fail", reason=reason)


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
    changes.validate()  # InvalidJobAction: a usage error, in the schema's words
    return _act(utils, job_actions.ActionKind.RESCHEDULE, ids, "reschedule", options=changes)


def remove(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    key = options["key"]
    require_configured_schema(utils)
    job_id = Job.objects.using(utils.alias).filter(key=key).values_list("id", flat=True).first()
    if job_id is None:
        summary = f"no job has the key {key!r}"
        return {
            "key": key,
            "outcome": "not_found",
            "job_id": None,
            "summary": summary,
            "message": summary[0].upper() + summary[1:] + ".",
        }
    actor = os_user()
    try:
        request = job_actions.build_request(
            job_actions.ActionKind.REMOVE, job_actions.Target(ids=(job_id,))
        )
        shown = job_actions.preview(actor, request)
        outcome = job_actions.apply(actor, shown.token, via=CLI)
    except Refused as exc:
        raise UsageError(str(exc)) from None
    still_there = Job.objects.using(utils.alias).filter(id=job_id).exists()
    if not outcome.changed:
        summary = f"job {job_id} (key {key!r}) {outcome.summary}"
        result = "not_found"
    elif still_there:
        summary = (
            f"job {job_id} (key {key!r}) is held by a worker: it keeps running, lost its key "
            "and will not be retried"
        )
        result = "detached"
    else:
        summary, result = f"removed job {job_id} (key {key!r})", "removed"
    return {
        "key": key,
        "outcome": result,
        "job_id": job_id,
        "summary": summary,
        "message": summary[0].upper() + summary[1:] + ".",
    }
