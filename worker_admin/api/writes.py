"""Writes on jobs: actions (run now, retry, reschedule, complete, fail, remove by key) and adds
(one job, a batch), each as a preview and an apply.

The work is the operations' (worker_admin/operations): they check the values, pin what the
preview showed, act once and audit. This module turns JSON bodies into their input and their
results and refusals into JSON; the `fingerprint` a preview returns is its confirmation token.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core.exceptions import ValidationError
from ninja import Router, Status

from worker_admin import databases
from worker_admin.api import serialize
from worker_admin.api.auth import WriterToken
from worker_admin.api.common import (
    VIA,
    Refusal,
    _payload_for,
    audit_safe,
    detail,
    refuse,
    schema_problem,
    user_of,
    write_permission,
)
from worker_admin.api.reads import filter_data, parse_job_filter
from worker_admin.api.schemas import (
    JobActionApply,
    JobActionBody,
    NewBatch,
    NewBatchApply,
    NewJob,
    NewJobApply,
)
from worker_admin.models import Job, JobQueue
from worker_admin.operations import adding, claims, job_actions
from worker_admin.operations.add_jobs import PREVIEW_ITEMS, batch_facts, job_warnings, key_effect
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.operations.job_specs import (
    Batch,
    BatchItemError,
    parse_batch,
    single_job,
    stored_json,
)
from worker_admin.stats import database_now
from worker_admin.utils import (
    RUN_NOW,
    RawJobSpec,
    RescheduleJobOptions,
)

router = Router(tags=["writes"], auth=WriterToken())

ADD_JOB, ADD_JOBS = "add_job", "add_jobs"
BATCH_SOURCE = "api"
RESCHEDULE_FIELDS = ("run_at", "priority", "attempts", "max_attempts")


def _jobs():
    return Job.objects.using(databases.current().alias)


def _guard(request) -> None:
    for refusal in (write_permission(request), schema_problem()):
        if refusal is not None:
            raise refusal


def _values(body) -> dict[str, Any]:
    """The body's fields as JSON values, fingerprint left out. A payload is taken as sent (it
    was parsed from JSON): pydantic would refuse to serialise one nested a few hundred deep."""
    values = body.model_dump(
        mode="json", exclude={"fingerprint", "payload", "jobs"}, exclude_none=True
    )
    if getattr(body, "payload", None) is not None:
        values["payload"] = body.payload
    return values


def _submitted(body) -> dict[str, Any]:
    """A refused request's values for its audit entry (without payloads: a rejected add
    records the payload's size, like the console's)."""
    values = _values(body)
    if "payload" in values:
        try:
            values["payload_bytes"] = len(stored_json(values.pop("payload")).encode("utf-8"))
        except (ValueError, RecursionError):
            values["payload_bytes"] = None
    return values


def _capitalised(text: str) -> str:
    text = text.rstrip(".") + "."
    return text[0].upper() + text[1:]


# -- job actions ------------------------------------------------------------------------------


def _reschedule_options(body: JobActionBody) -> RescheduleJobOptions:
    run_at = RUN_NOW if body.run_at == "now" else body.run_at
    return job_actions.reschedule_options(run_at, body.priority, body.attempts, body.max_attempts)


def _action_request(body: JobActionBody) -> job_actions.ActionRequest:
    kind = job_actions.ActionKind(body.action)
    given = [name for name in ("ids", "key", "filter") if getattr(body, name) is not None]
    if len(given) != 1:
        raise Refusal(400, "Give exactly one target: ids, key or filter.")
    options_given = [name for name in RESCHEDULE_FIELDS if getattr(body, name) is not None]
    if options_given and kind is not job_actions.ActionKind.RESCHEDULE:
        raise Refusal(
            400, f"{', '.join(options_given)} only apply to reschedule, not to {kind.value}."
        )
    if body.ids is not None:
        target = job_actions.Target(ids=tuple(dict.fromkeys(body.ids)))
    elif body.key is not None:
        job_id = _jobs().filter(key=body.key).values_list("id", flat=True).first()
        if job_id is None:
            raise Refusal(404, f"No job has the key “{body.key[:100]}”.")
        target = job_actions.Target(ids=(job_id,))
    else:
        filters, problems = parse_job_filter(filter_data(body.filter))
        if problems:
            raise Refusal(400, " ".join(problems))
        target = job_actions.Target(filters=filters)
    options = _reschedule_options(body) if kind is job_actions.ActionKind.RESCHEDULE else None
    return job_actions.build_request(kind, target, reason=body.reason, options=options)


def _changes(preview: job_actions.Preview) -> list[dict[str, Any]]:
    return [
        {"id": job_id, "changes": [dataclasses.asdict(change) for change in changes]}
        for job_id, changes in preview.changes.items()
    ]


@router.post("/jobs/actions/preview", summary="Preview a job action", url_name="action_preview")
def preview_action(request, body: JobActionBody):
    """What the action would do: the jobs it pins (exactly those, skipped at apply if they
    change meanwhile), the first rows with before -> after, how many a worker holds (they will
    be skipped), warnings, and the fingerprint to apply it with."""
    try:
        _guard(request)
        action = _action_request(body)
        preview = job_actions.preview(user_of(request), action, index_budget=True)
    except Refusal as refusal:
        return refuse(request, body.action, refusal, _submitted(body))
    except Refused as exc:
        return refuse(request, body.action, Refusal(exc.status, str(exc)), _submitted(body))
    info = job_actions.ACTIONS[action.kind]
    return {
        "action": action.kind.value,
        "label": info.label,
        "explanation": info.explanation,
        "requires_reason": info.destructive,
        "count": preview.count,
        "will_change": preview.will_change,
        "locked": preview.locked,
        "old_locks": preview.old_locks,
        "missing_ids": preview.missing,
        "pinned_ids": [pinned[0] for pinned in preview.pinned],
        "rows": [serialize.job(request, row, with_payload=False) for row in preview.rows],
        "changes": _changes(preview),
        "warnings": preview.warnings,
        "fingerprint": preview.token,
        "expires_in_seconds": claims.MAX_AGE,
    }


@router.post("/jobs/actions/apply", summary="Apply a previewed job action", url_name="action_apply")
def apply_action(request, body: JobActionApply):
    """The same body as the preview plus its fingerprint. Acts once, on exactly the jobs the
    preview pinned: a pinned job that changed since (or is gone) is skipped and counted; a job
    that started to match a filter is not touched. 409 if the options differ from the preview
    or the fingerprint was already applied; nothing is changed then."""
    try:
        _guard(request)
        action = _action_request(body)
        info = job_actions.ACTIONS[action.kind]
        if info.destructive and not action.reason:
            raise Refusal(
                400, f"Give a reason to {info.verb} these jobs; it goes in the audit log."
            )
        outcome = job_actions.apply(
            user_of(request), body.fingerprint, reason=action.reason, request=action, via=VIA
        )
    except Refusal as refusal:
        return refuse(request, body.action, refusal, _submitted(body))
    except AlreadyUsed as exc:
        refusal = Refusal(409, str(exc))
        entry = exc.entry.pk if exc.entry is not None else None
        refuse(request, body.action, refusal, _submitted(body))
        return detail(str(exc), 409, audit_entry_id=entry)
    except Refused as exc:
        return refuse(request, body.action, Refusal(exc.status, str(exc)), _submitted(body))
    return {
        "action": action.kind.value,
        "summary": outcome.summary,
        "pinned": outcome.pinned,
        "requested": outcome.requested,
        "changed": outcome.changed,
        "skipped": outcome.skipped,
        "changed_since_preview": outcome.stale,
        "missing": outcome.missing,
        "audit_entry_ids": outcome.entries,
        "error": outcome.error or None,
    }


# -- one job ----------------------------------------------------------------------------------


def _new_job(body: NewJob) -> RawJobSpec:
    try:
        return single_job(_values(body))
    except BatchItemError as exc:
        raise Refusal(400, _capitalised(str(exc))) from None


def _job_out(request, job_id: int) -> dict[str, Any]:
    row = _jobs().with_state().select_related("task", "job_queue").get(id=job_id)
    return serialize.job(request, row, with_payload=True)


def _add_refusal(request, action: str, exc: Refused, data: dict):
    """An add the operation refused: 409 for a used or stale preview, else its status."""
    if isinstance(exc, AlreadyUsed) and exc.entry is not None:
        entry = exc.entry
        message = (
            f"This preview was already applied (audit entry {entry.id}: {entry.summary}); "
            "nothing was added again. Preview again to add more."
        )
        refuse(request, action, Refusal(409, message), data)
        return detail(message, 409, audit_entry_id=entry.id)
    if isinstance(exc, adding.Failed):
        return detail(str(exc), 400)  # recorded as "failed" by the operation
    return refuse(request, action, Refusal(exc.status, str(exc)), data)


@router.post("/jobs/add/preview", summary="Preview adding a job", url_name="add_preview")
def preview_add(request, body: NewJob):
    """What adding this job would do, including what its key does to the job holding it."""
    try:
        _guard(request)
        raw = _new_job(body)
    except Refusal as refusal:
        return refuse(request, ADD_JOB, refusal, _submitted(body))
    shown = adding.preview_job(user_of(request), raw)
    existing = shown.holders.get(raw.spec.job_key) if raw.spec.job_key else None
    size = len(stored_json(raw.payload).encode("utf-8"))
    effect = key_effect(raw.spec, raw.payload, existing)
    queue = raw.spec.queue_name
    return {
        "job": audit_safe(shown.values) | {"payload": _payload_for(request, raw.payload)},
        "payload_bytes": size,
        "queue_exists": queue is None
        or JobQueue.objects.using(databases.current().alias).filter(queue_name=queue).exists(),
        "key_holder": None
        if existing is None
        else serialize.job(request, existing, with_payload=False),
        "key_effect": None if effect is None else {"tone": effect[0], "text": effect[1]},
        "warnings": job_warnings(
            raw.identifier, raw.spec, size, database_now(databases.current().alias)
        ),
        "fingerprint": shown.token,
        "expires_in_seconds": adding.MAX_AGE,
    }


@router.post("/jobs/add/apply", summary="Add a previewed job", response={201: dict}, url_name="add")
def apply_add(request, body: NewJobApply):
    """The preview's body plus its fingerprint; adds once (409 when already applied, or when
    the job holding its key changed since the preview)."""
    try:
        _guard(request)
        raw = _new_job(body)
        added = adding.apply_job(user_of(request), body.fingerprint, raw, via=VIA)
    except Refusal as refusal:
        return refuse(request, ADD_JOB, refusal, _submitted(body))
    except Refused as exc:
        return _add_refusal(request, ADD_JOB, exc, _submitted(body))
    job = added.jobs[0]
    return Status(
        201,
        {
            "summary": added.summary,
            "job": _job_out(request, job.id),
            "audit_entry_id": added.entry.id,
        },
    )


# -- a batch ----------------------------------------------------------------------------------


def _batch(body: NewBatch) -> Batch:
    """The batch checks every face shares, all or nothing (items are counted from 0)."""
    try:
        return parse_batch([_values(item) for item in body.jobs])
    except ValidationError as exc:
        raise Refusal(400, " ".join(exc.messages)) from None


def _batch_row(request, index: int, raw: RawJobSpec) -> dict[str, Any]:
    spec = raw.spec
    return {
        "index": index,
        "identifier": raw.identifier,
        "queue_name": spec.queue_name,
        "run_at": spec.run_at,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "job_key": spec.job_key,
        "job_key_mode": spec.job_key_mode.value if spec.job_key_mode else None,
        "flags": list(spec.flags or ()),
        "payload": _payload_for(request, raw.payload),
    }


@router.post("/jobs/batch/preview", summary="Preview adding a batch", url_name="batch_preview")
def preview_batch(request, body: NewBatch):
    try:
        _guard(request)
        batch = _batch(body)
    except Refusal as refusal:
        return refuse(request, ADD_JOBS, refusal, {"count": len(body.jobs)})
    shown = adding.preview_batch(user_of(request), batch, source=BATCH_SOURCE)
    facts = batch_facts(batch.specs)
    return {
        "count": len(batch.specs),
        "rows": [
            _batch_row(request, index, raw) for index, raw in enumerate(batch.specs[:PREVIEW_ITEMS])
        ],
        "keyed": facts["keyed"],
        "replaced": facts["replaced"],
        "detached": facts["detached"],
        "preserve_run_at_items": facts["preserve"],
        "tasks": dict(facts["tasks"]),
        "task_count": facts["task_count"],
        "new_tasks": facts["new_tasks"],
        "payload_bytes": facts["payload_bytes"],
        "fingerprint": shown.token,
        "expires_in_seconds": adding.MAX_AGE,
    }


@router.post(
    "/jobs/batch/apply", summary="Add a previewed batch", response={201: dict}, url_name="batch"
)
def apply_batch(request, body: NewBatchApply):
    try:
        _guard(request)
        batch = _batch(body)
        added = adding.apply_batch(
            user_of(request), body.fingerprint, batch, source=BATCH_SOURCE, via=VIA
        )
    except Refusal as refusal:
        return refuse(request, ADD_JOBS, refusal, {"count": len(body.jobs)})
    except Refused as exc:
        return _add_refusal(request, ADD_JOBS, exc, {"count": len(body.jobs)})
    return Status(
        201,
        {
            "summary": added.summary,
            "job_ids": [job.id for job in added.jobs],
            "audit_entry_id": added.entry.id,
        },
    )
