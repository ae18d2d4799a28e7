"""Writes on jobs: actions (run now, retry, reschedule, complete, fail, remove by key) and adds
(one job, a batch), each as a preview and an apply (worker_admin/api/fingerprints.py).

The work is the console's: `worker_admin.actions` previews and executes actions in audited
chunks, the add forms' checks validate jobs, `WorkerUtils` writes. What is the API's own is the
fingerprint of the rows a write touches, and `PinnedTarget`, which makes an action on a filter
change exactly the jobs whose state the fingerprint checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from ninja import Router, Status

from worker_admin import audit
from worker_admin.api import fingerprints, serialize
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
from worker_admin.api.fingerprints import BadFingerprint, FingerprintMismatch
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
from worker_admin.operations import claims, job_actions
from worker_admin.operations.add_jobs import (
    AUDIT_BATCH_BYTES,
    AUDIT_PAYLOAD_BYTES,
    PREVIEW_ITEMS,
)
from worker_admin.operations.add_jobs import (
    batch_facts as _batch_facts,
)
from worker_admin.operations.add_jobs import (
    batch_summary as _batch_summary,
)
from worker_admin.operations.add_jobs import (
    db_error as _db_error,
)
from worker_admin.operations.add_jobs import (
    existing_keys as _existing_keys,
)
from worker_admin.operations.add_jobs import (
    fits_audit as _fits_audit,
)
from worker_admin.operations.add_jobs import (
    is_replaceable as _is_replaceable,
)
from worker_admin.operations.add_jobs import (
    job_summary as _job_summary,
)
from worker_admin.operations.add_jobs import (
    job_warnings as _job_warnings,
)
from worker_admin.operations.add_jobs import (
    key_effect as _key_effect,
)
from worker_admin.operations.add_jobs import (
    keyed_job as _keyed_job,
)
from worker_admin.operations.add_jobs import (
    serialize_confirmations as _serialize_confirmations,
)
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.operations.job_specs import (
    Batch,
    BatchItemError,
    _canonical,
    batch_item,
    parse_batch,
    stored_json,
)
from worker_admin.stats import database_now
from worker_admin.utils import (
    RUN_NOW,
    InvalidJobSpec,
    JobKeyMode,
    RawJobSpec,
    RescheduleJobOptions,
    WorkerUtils,
    WorkerUtilsError,
)

router = Router(tags=["writes"], auth=WriterToken())

ADD_JOB, ADD_JOBS = "add_job", "add_jobs"
# The columns whose change means a job is no longer what was previewed. updated_at moves on
# every change the schema's functions make; the rest catch a change made in the same instant.
SNAPSHOT_COLUMNS = (
    "id",
    "revision",
    "updated_at",
    "locked_at",
    "locked_by",
    "run_at",
    "attempts",
    "max_attempts",
    "priority",
    "key",
    "task_id",
    "job_queue_id",
)
RESCHEDULE_FIELDS = ("run_at", "priority", "attempts", "max_attempts")


def _jobs():
    return Job.objects.using(settings.WORKER_DATABASE)


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


def _fingerprint_refusal(exc: Exception) -> Refusal:
    return Refusal(409 if isinstance(exc, FingerprintMismatch) else 400, str(exc))


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
        preview = job_actions.preview(user_of(request), action)
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
    """The add forms' checks (forms.batch_item); unsafe_dedupe, which a batch refuses, is
    checked without the mode and then put back."""
    item = _values(body)
    dedupe = item.get("job_key_mode") == JobKeyMode.UNSAFE_DEDUPE.value
    if dedupe:
        if "job_key" not in item:
            raise Refusal(400, "job_key_mode unsafe_dedupe needs a job_key.")
        item.pop("job_key_mode")
    try:
        raw = batch_item(item)
        if dedupe:
            spec = dataclasses.replace(raw.spec, job_key_mode=JobKeyMode.UNSAFE_DEDUPE)
            spec.validate()
            raw = dataclasses.replace(raw, spec=spec)
    except (BatchItemError, InvalidJobSpec) as exc:
        raise Refusal(400, _capitalised(str(exc))) from None
    return raw


def _holder_state(job: Job | None) -> list | None:
    if job is None:
        return None
    return [getattr(job, column) for column in SNAPSHOT_COLUMNS]


def _add_state(raw: RawJobSpec) -> tuple[dict[str, Any], Job | None]:
    existing = _keyed_job(raw.spec.job_key)
    values = {
        "job": _canonical(raw.identifier, raw.payload, raw.spec),
        "holder": _holder_state(existing),
    }
    return audit_safe(values), existing


def _job_out(request, job_id: int) -> dict[str, Any]:
    row = _jobs().with_state().select_related("task", "job_queue").get(id=job_id)
    return serialize.job(request, row, with_payload=True)


@router.post("/jobs/add/preview", summary="Preview adding a job", url_name="add_preview")
def preview_add(request, body: NewJob):
    """What adding this job would do, including what its key does to the job holding it."""
    try:
        _guard(request)
        raw = _new_job(body)
    except Refusal as refusal:
        return refuse(request, ADD_JOB, refusal, _submitted(body))
    values, existing = _add_state(raw)
    size = len(stored_json(raw.payload).encode("utf-8"))
    effect = _key_effect(raw.spec, raw.payload, existing)
    queue = raw.spec.queue_name
    shown = values["job"] | {"payload": _payload_for(request, raw.payload)}
    return {
        "job": shown,
        "payload_bytes": size,
        "queue_exists": queue is None
        or JobQueue.objects.using(settings.WORKER_DATABASE).filter(queue_name=queue).exists(),
        "key_holder": None
        if existing is None
        else serialize.job(request, existing, with_payload=False),
        "key_effect": None if effect is None else {"tone": effect[0], "text": effect[1]},
        "warnings": _job_warnings(
            raw.identifier, raw.spec, size, database_now(settings.WORKER_DATABASE)
        ),
        "fingerprint": fingerprints.issue(ADD_JOB, user_of(request), values),
        "expires_in_seconds": fingerprints.PREVIEW_MAX_AGE,
    }


def _audited_payload(parameters: dict, payload: Any) -> dict:
    """The add's audit parameters keep the payload when it is small enough, else its hash."""
    text = stored_json(payload)
    parameters["payload_bytes"] = len(text.encode("utf-8"))
    if not _fits_audit(text, AUDIT_PAYLOAD_BYTES):
        parameters["payload"] = None
        parameters["payload_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return parameters


def _already_applied(action: str, nonce: str) -> None:
    earlier = fingerprints.already_applied(action, nonce)
    if earlier is not None:
        raise Refusal(
            409,
            f"This preview was already applied (audit entry {earlier.id}: {earlier.summary}); "
            "nothing was added again. Preview again to add more.",
        )


def _record_failure(request, action: str, parameters: dict, error: str) -> None:
    audit.record(
        actor=user_of(request),
        via=VIA,
        action=action,
        outcome="failed",
        parameters=audit_safe(parameters),
        summary=f"{action} failed",
        error=error,
    )


@router.post("/jobs/add/apply", summary="Add a previewed job", response={201: dict}, url_name="add")
def apply_add(request, body: NewJobApply):
    user = user_of(request)
    try:
        _guard(request)
        raw = _new_job(body)
        values, _existing = _add_state(raw)
        nonce = fingerprints.check(body.fingerprint, ADD_JOB, user, values)
    except Refusal as refusal:
        return refuse(request, ADD_JOB, refusal, _submitted(body))
    except (FingerprintMismatch, BadFingerprint) as exc:
        return refuse(request, ADD_JOB, _fingerprint_refusal(exc), _submitted(body))
    parameters = _audited_payload({**values["job"], "fingerprint_nonce": nonce}, raw.payload)
    failure = None
    try:
        with transaction.atomic():
            _serialize_confirmations(user)  # two applies of one preview run one after the other
            _already_applied(ADD_JOB, nonce)
            existing = _keyed_job(raw.spec.job_key)
            job = WorkerUtils().add_raw_job(raw.identifier, raw.payload, raw.spec)
            summary = _job_summary(job, raw.identifier, existing, raw.spec)
            entry = audit.record(
                actor=user,
                via=VIA,
                action=ADD_JOB,
                outcome="done",
                parameters=audit_safe(parameters),
                changed_ids=[job.id],
                summary=summary,
                before_image=audit_safe([audit.job_image(existing)] if existing else []),
            )
    except Refusal as refusal:
        return refuse(request, ADD_JOB, refusal, _submitted(body))
    except WorkerUtilsError as exc:
        return refuse(request, ADD_JOB, Refusal(400, f"{exc} Nothing was added."), _submitted(body))
    except DatabaseError as exc:
        failure = f"The database refused the job: {_db_error(exc)}. Nothing was added."
    if failure is not None:
        _record_failure(request, ADD_JOB, parameters, failure)
        return detail(failure, 400)
    return Status(
        201, {"summary": summary, "job": _job_out(request, job.id), "audit_entry_id": entry.id}
    )


# -- a batch ----------------------------------------------------------------------------------


def _batch(body: NewBatch) -> Batch:
    """The batch checks every face shares, all or nothing (items are counted from 0)."""
    try:
        return parse_batch([_values(item) for item in body.jobs])
    except ValidationError as exc:
        raise Refusal(400, " ".join(exc.messages)) from None


def _batch_state(form: Batch) -> tuple[dict[str, Any], dict[str, Job]]:
    existing = _existing_keys(form.specs)
    holders = {key: _holder_state(job) for key, job in sorted(existing.items())}
    return audit_safe({"items": form.canonical(), "holders": holders}), existing


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
        form = _batch(body)
    except Refusal as refusal:
        return refuse(request, ADD_JOBS, refusal, {"count": len(body.jobs)})
    values, _existing = _batch_state(form)
    facts = _batch_facts(form.specs)
    return {
        "count": len(form.specs),
        "rows": [
            _batch_row(request, index, raw) for index, raw in enumerate(form.specs[:PREVIEW_ITEMS])
        ],
        "keyed": facts["keyed"],
        "replaced": facts["replaced"],
        "detached": facts["detached"],
        "preserve_run_at_items": facts["preserve"],
        "tasks": dict(facts["tasks"]),
        "task_count": facts["task_count"],
        "new_tasks": facts["new_tasks"],
        "payload_bytes": facts["payload_bytes"],
        "fingerprint": fingerprints.issue(ADD_JOBS, user_of(request), values),
        "expires_in_seconds": fingerprints.PREVIEW_MAX_AGE,
    }


@router.post(
    "/jobs/batch/apply", summary="Add a previewed batch", response={201: dict}, url_name="batch"
)
def apply_batch(request, body: NewBatchApply):
    user = user_of(request)
    try:
        _guard(request)
        form = _batch(body)
        values, _existing = _batch_state(form)
        nonce = fingerprints.check(body.fingerprint, ADD_JOBS, user, values)
    except Refusal as refusal:
        return refuse(request, ADD_JOBS, refusal, {"count": len(body.jobs)})
    except (FingerprintMismatch, BadFingerprint) as exc:
        return refuse(request, ADD_JOBS, _fingerprint_refusal(exc), {"count": len(body.jobs)})
    specs = form.specs
    parameters: dict[str, Any] = {
        "count": len(specs),
        "source": "api",
        "tasks": dict(Counter(raw.identifier for raw in specs).most_common(50)),
        "keyed": sum(1 for raw in specs if raw.spec.job_key is not None),
        "preserve_run_at": any(
            raw.spec.job_key_mode == JobKeyMode.PRESERVE_RUN_AT for raw in specs
        ),
        "fingerprint_nonce": nonce,
    }
    items_text = form.hidden_items()
    if _fits_audit(items_text, AUDIT_BATCH_BYTES):
        parameters["items"] = form.canonical()
    else:
        parameters["items_sha256"] = hashlib.sha256(items_text.encode("utf-8")).hexdigest()
    failure = None
    try:
        with transaction.atomic():
            _serialize_confirmations(user)
            _already_applied(ADD_JOBS, nonce)
            existing = _existing_keys(specs)
            jobs = WorkerUtils().add_raw_jobs(specs)
            summary = _batch_summary(jobs, existing)
            entry = audit.record(
                actor=user,
                via=VIA,
                action=ADD_JOBS,
                outcome="done",
                parameters=audit_safe(parameters),
                changed_ids=[job.id for job in jobs],
                summary=summary,
                before_image=audit_safe(
                    [audit.job_image(job) for job in existing.values() if _is_replaceable(job)]
                ),
            )
    except Refusal as refusal:
        return refuse(request, ADD_JOBS, refusal, {"count": len(specs)})
    except WorkerUtilsError as exc:
        refusal = Refusal(400, f"{exc} Nothing was added.")
        return refuse(request, ADD_JOBS, refusal, {"count": len(specs)})
    except DatabaseError as exc:
        failure = f"The database refused the batch: {_db_error(exc)}. Nothing was added."
    if failure is not None:
        _record_failure(request, ADD_JOBS, parameters, failure)
        return detail(failure, 400)
    return Status(
        201, {"summary": summary, "job_ids": [job.id for job in jobs], "audit_entry_id": entry.id}
    )
