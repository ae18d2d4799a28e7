"""Adding jobs, one or a batch, as a preview and an apply that acts once.

    shown = preview_job(actor, raw)              # what the key does, warnings, the token
    added = apply_job(actor, shown.token, raw)   # once; audited in the same transaction

The preview pins the job that holds each key (id, revision, updated_at and its values): if it
changed before the apply, the apply is refused (Stale) and adds nothing, since what the key
would do is no longer what was shown. The values are sent again with the confirmation (the
page's hidden fields, the API's body) and must hash to what was previewed.

Acting once is the confirmation row's (claims.py): the apply locks it, refuses a used one with
AlreadyUsed, adds, writes the audit entry and marks it used, all in one transaction. A database
error rolls all of it back (the confirmation stays usable) and is recorded as a "failed" entry.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction

from worker_admin import audit, databases
from worker_admin.models import Job
from worker_admin.operations import claims
from worker_admin.operations.add_jobs import (
    AUDIT_BATCH_BYTES,
    AUDIT_PAYLOAD_BYTES,
    batch_summary,
    db_error,
    existing_keys,
    fits_audit,
    is_replaceable,
    job_summary,
    keyed_job,
)
from worker_admin.operations.errors import (
    BadConfirmation,
    Differs,
    Expired,
    OtherActor,
    Refused,
    Stale,
)
from worker_admin.operations.job_specs import Batch, _canonical, stored_json
from worker_admin.operations.jsonsafe import audit_safe
from worker_admin.utils import JobKeyMode, RawJobSpec, WorkerUtils, WorkerUtilsError

ADD_JOB, ADD_JOBS = "add_job", "add_jobs"
MAX_AGE = 60 * 60  # seconds an add preview stays confirmable
HOLDER_COLUMNS = ("id", "revision", "updated_at", "locked_at", "run_at", "attempts")
HOLDER_COLUMNS += ("max_attempts", "priority", "task_id", "job_queue_id")


class Failed(Refused):
    """The database refused the add; nothing was added and a "failed" entry says so."""


@dataclass
class AddPreview:
    kind: str
    values: Any  # the canonical job (one) or list of jobs (a batch)
    holders: dict[str, Job] = field(default_factory=dict)
    token: str = ""


@dataclass(frozen=True)
class Added:
    jobs: list[Job]
    summary: str
    entry: audit.AuditEntry


def _holder_pin(job: Job | None) -> list | None:
    if job is None:
        return None
    return [str(getattr(job, column)) for column in HOLDER_COLUMNS]


def _pins(holders: dict[str, Job]) -> list:
    return [[key, _holder_pin(job)] for key, job in sorted(holders.items())]


def _digest(kind: str, values: Any) -> str:
    return claims.fingerprint({"kind": kind, "values": values})


def preview_job(actor, raw: RawJobSpec) -> AddPreview:
    existing = keyed_job(raw.spec.job_key)
    values = _canonical(raw.identifier, raw.payload, raw.spec)
    holders = {raw.spec.job_key: existing} if existing is not None else {}
    shown = AddPreview(ADD_JOB, values, holders)
    shown.token = claims.issue(
        ADD_JOB, actor, {"count": 1}, _pins(_holders_of([raw], holders)), _digest(ADD_JOB, values)
    )
    return shown


def preview_batch(actor, batch: Batch, source: str = "") -> AddPreview:
    holders = existing_keys(batch.specs)
    values = {"source": source, "items": batch.canonical()}
    shown = AddPreview(ADD_JOBS, values, holders)
    pins = _pins(_holders_of(batch.specs, holders))
    shown.token = claims.issue(
        ADD_JOBS, actor, {"count": len(batch.specs)}, pins, _digest(ADD_JOBS, values)
    )
    return shown


def _holders_of(specs: list[RawJobSpec], found: dict[str, Job]) -> dict[str, Job | None]:
    """Every key of the specs with its holder (None: no job holds it)."""
    return {raw.spec.job_key: found.get(raw.spec.job_key) for raw in specs if raw.spec.job_key}


def apply_job(
    actor, token: str, raw: RawJobSpec, *, via: str, guard: Callable[[], None] | None = None
) -> Added:
    """Add the previewed job once. `guard` is the face's own last check, run under the claim
    (the page checks its session there)."""
    values = _canonical(raw.identifier, raw.payload, raw.spec)
    parameters = _job_parameters(values, raw.payload)

    def add(utils: WorkerUtils, holders: dict[str, Job]):
        existing = holders.get(raw.spec.job_key) if raw.spec.job_key else None
        job = utils.add_raw_job(raw.identifier, raw.payload, raw.spec)
        summary = job_summary(job, raw.identifier, existing, raw.spec)
        return [job], summary, [audit.job_image(existing)] if existing is not None else []

    return _apply(actor, token, ADD_JOB, values, [raw], parameters, add, via=via, guard=guard)


def apply_batch(
    actor,
    token: str,
    batch: Batch,
    *,
    source: str = "",
    via: str,
    guard: Callable[[], None] | None = None,
) -> Added:
    values = {"source": source, "items": batch.canonical()}
    parameters = _batch_parameters(batch, source)

    def add(utils: WorkerUtils, holders: dict[str, Job]):
        jobs = utils.add_raw_jobs(batch.specs)
        found = {key: job for key, job in holders.items() if job is not None}
        images = [audit.job_image(job) for job in found.values() if is_replaceable(job)]
        return jobs, batch_summary(jobs, found), images

    return _apply(actor, token, ADD_JOBS, values, batch.specs, parameters, add, via, guard)


def _apply(actor, token, kind, values, specs, parameters, add, via, guard) -> Added:
    failure = None
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            row = _claim(token, kind, actor, _digest(kind, values))
            claims.refuse_if_used(row)
            if guard is not None:
                guard()
            parameters["confirmation"] = row.nonce
            utils = WorkerUtils()
            try:
                with transaction.atomic(using=utils.alias):
                    holders = _check_holders(specs, row.pinned)
                    jobs, summary, images = add(utils, holders)
                    entry = audit.record(
                        actor=actor,
                        via=via,
                        action=kind,
                        outcome="done",
                        parameters=audit_safe(parameters),
                        changed_ids=[job.id for job in jobs],
                        summary=summary,
                        before_image=audit_safe(images),
                    )
            except WorkerUtilsError as exc:
                raise Refused(f"{exc} Nothing was added.") from None
            claims.mark_used(row, {"first_entry": entry.id})
    except DatabaseError as exc:
        what = "job" if kind == ADD_JOB else "batch"
        failure = f"The database refused the {what}: {db_error(exc)}. Nothing was added."
    if failure is not None:
        audit.record(
            actor=actor,
            via=via,
            action=kind,
            outcome="failed",
            parameters=audit_safe({"step": "confirm", **parameters}),
            summary=f"{kind} failed",
            error=failure.replace("\x00", "\ufffd"),
        )
        raise Failed(failure)
    return Added(jobs, summary, entry)


def _claim(token: str, kind: str, actor, digest: str):
    """The confirmation's row, locked; refusals in the words of an add."""
    try:
        return claims.claim(token, kind, actor, digest, max_age=MAX_AGE)
    except BadConfirmation:
        raise BadConfirmation(
            "The confirmation token is missing or damaged: nothing was added. Preview again, "
            "then confirm."
        ) from None
    except Expired:
        raise Expired(
            "This preview is more than an hour old: nothing was added. Preview again, then confirm."
        ) from None
    except OtherActor:
        raise OtherActor(
            "This confirmation belongs to another user: nothing was added. Preview again."
        ) from None
    except Differs:
        raise Differs(
            "The values sent differ from the preview they confirm: nothing was added. Check "
            "the preview again, then confirm."
        ) from None


def _check_holders(specs: list[RawJobSpec], pinned: list) -> dict[str, Job | None]:
    """The keys' holders now, locked; Stale if any differs from the preview's."""
    keys = [raw.spec.job_key for raw in specs if raw.spec.job_key]
    found: dict[str, Job] = {}
    jobs = Job.objects.using(databases.current().alias)
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        # Lock the holders (only the job rows: a lock on a task row would hold up other adds).
        held = list(jobs.filter(key__in=chunk).select_for_update().values_list("id", flat=True))
        for job in jobs.select_related("task", "job_queue").filter(id__in=held):
            found[job.key] = job
    now = {key: _holder_pin(found.get(key)) for key in keys}
    for key, pin in pinned:
        if now.get(key) != pin:
            raise Stale(
                f"The job holding the key “{key[:100]}” changed since the preview (added, "
                "replaced, locked or finished): nothing was added; preview again."
            )
    return {key: found.get(key) for key in keys}


def _job_parameters(values: dict, payload: Any) -> dict:
    """The add's audit parameters keep the payload when it is small enough, else its hash."""
    text = stored_json(payload)
    parameters = {**values, "payload_bytes": len(text.encode("utf-8"))}
    if not fits_audit(text, AUDIT_PAYLOAD_BYTES):
        parameters["payload"] = None
        parameters["payload_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return parameters


def _batch_parameters(batch: Batch, source: str) -> dict:
    specs = batch.specs
    parameters: dict[str, Any] = {
        "count": len(specs),
        "source": source,
        "tasks": dict(Counter(raw.identifier for raw in specs).most_common(50)),
        "keyed": sum(1 for raw in specs if raw.spec.job_key is not None),
        "preserve_run_at": any(
            raw.spec.job_key_mode == JobKeyMode.PRESERVE_RUN_AT for raw in specs
        ),
    }
    items_text = batch.hidden_items()
    if fits_audit(items_text, AUDIT_BATCH_BYTES):
        parameters["items"] = batch.canonical()
    else:
        parameters["items_sha256"] = hashlib.sha256(items_text.encode("utf-8")).hexdigest()
    return parameters
