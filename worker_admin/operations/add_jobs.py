"""Adding jobs (one, a batch): what every face shares around `WorkerUtils.add_raw_job(s)`.

What a key will do to the job that holds it (`key_effect`), the warnings, the facts of a batch,
and the summaries the audit log keeps. The checks on the values themselves are in job_specs.py;
the preview and the apply are in adding.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from worker_admin import audit, databases
from worker_admin.models import Job, Task
from worker_admin.operations.job_specs import stored_json
from worker_admin.utils import JobKeyMode, RawJobSpec

PREVIEW_ITEMS = 20
LARGE_PAYLOAD_BYTES = 64 * 1024
AUDIT_PAYLOAD_BYTES = 16 * 1024  # payloads up to this size are kept in the audit entry
AUDIT_BATCH_BYTES = 64 * 1024


def jobs():
    return Job.objects.using(databases.current().alias)


def fits_audit(json_text: str, limit: int) -> bool:
    """Whether JSON goes into the audit entry whole: small enough, and without a \\u0000
    escape, which the json payload column accepts but the audit log's jsonb refuses."""
    return len(json_text.encode("utf-8")) <= limit and "\\u0000" not in json_text


def db_error(exc: DatabaseError) -> str:
    return audit.first_line(exc).rstrip(".")


def task_is_known(identifier: str) -> bool:
    return Task.objects.using(databases.current().alias).filter(identifier=identifier).exists()


def job_state(job: Job) -> str:
    if job.locked_at is not None:
        return "locked"
    if job.attempts >= job.max_attempts:
        return "failed"
    return "scheduled" if job.run_at > timezone.now() else "ready"


def keyed_job(key: str | None) -> Job | None:
    if key is None:
        return None
    return jobs().select_related("task").filter(key=key).first()


def key_effect(spec, payload: Any, existing: Job | None) -> tuple[str, str] | None:
    """(tone, sentence): what add_job will do with the key, by the schema's rules (§4)."""
    key = spec.job_key
    if key is None:
        return None
    if existing is None:
        return "info", f"No job holds the key “{key}”: a new job is created with it."
    job, rev = existing.id, existing.revision
    holder = (
        f"The key “{key}” belongs to job {job} ({existing.task.identifier}, "
        f"{job_state(existing)}, revision {rev})."
    )
    if spec.job_key_mode == JobKeyMode.UNSAFE_DEDUPE:
        held = (
            " A worker holds it right now; it is returned all the same."
            if existing.locked_at
            else ""
        )
        return "warn", (
            f"{holder} unsafe_dedupe: job {job} is returned unchanged, only its revision moves "
            f"({rev} → {rev + 1}). The payload and every other value here are ignored.{held}"
        )
    if existing.locked_at is not None:
        return "warn", (
            f"{holder} Job {job} is locked by a worker: it loses its key and a new job is "
            f"created. The worker ({existing.locked_by}) may finish it, but it will not be "
            "retried: its remaining attempts are used up."
        )
    if existing.attempts >= existing.max_attempts:
        return "warn", (
            f"{holder} Job {job} has failed permanently: it loses its key and a new job is created."
        )
    effect = f"Replaces the payload of job {job} (revision {rev} → {rev + 1})"
    if spec.job_key_mode == JobKeyMode.PRESERVE_RUN_AT:
        kept = timezone.localtime(existing.run_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        effect += f" and keeps run_at of job {job} ({kept})"
    else:
        effect += " and its run_at"
    effect += (
        "; its task, queue, priority, max attempts and flags become the values above, its "
        "attempts go back to 0 and its last error is cleared."
    )
    if isinstance(existing.payload, list) and isinstance(payload, list):
        effect += (
            f" Both payloads are JSON arrays: the {len(payload):,} new items are appended to "
            f"its {len(existing.payload):,}."
        )
    return "info", f"{holder} {effect}"


def job_warnings(identifier: str, spec, size: int, now) -> list[str]:
    warnings = []
    if not task_is_known(identifier):
        warnings.append(
            f"No job in this database uses the task “{identifier}” yet. Check the spelling: "
            "a worker that has no task of that name fails the job."
        )
    if spec.run_at is not None and spec.run_at <= now:
        warnings.append("Run at is in the past: the job is ready at once.")
    if size > LARGE_PAYLOAD_BYTES:
        warnings.append(
            "A large payload travels with the job on every fetch and retry; consider storing "
            "the data elsewhere and passing a reference."
        )
    return warnings


def job_summary(job: Job, identifier: str, existing: Job | None, spec) -> str:
    key = spec.job_key
    if existing is not None and job.id == existing.id:
        if spec.job_key_mode == JobKeyMode.UNSAFE_DEDUPE:
            return (
                f"unsafe_dedupe: job {job.id} ({identifier}) already holds the key “{key}” and "
                f"was returned unchanged (revision {job.revision})"
            )
        return f"replaced job {job.id} ({identifier}) by its key “{key}” (revision {job.revision})"
    summary = f"added job {job.id} ({identifier})"
    if existing is not None:
        summary += f"; job {existing.id}, locked or failed, gave up the key “{key}”"
    return summary


def existing_keys(specs: list[RawJobSpec]) -> dict[str, Job]:
    keys = [raw.spec.job_key for raw in specs if raw.spec.job_key is not None]
    found: dict[str, Job] = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        for job in jobs().select_related("task").filter(key__in=chunk):
            found[job.key] = job
    return found


def is_replaceable(job: Job) -> bool:
    """The schema updates an unlocked job with attempts left; any other keyed job is detached."""
    return job.locked_at is None and job.attempts < job.max_attempts


def batch_facts(specs: list[RawJobSpec]) -> dict[str, Any]:
    existing = existing_keys(specs)
    keyed = sum(1 for raw in specs if raw.spec.job_key is not None)
    preserve = [
        index
        for index, raw in enumerate(specs)
        if raw.spec.job_key_mode == JobKeyMode.PRESERVE_RUN_AT
    ]
    tasks = Counter(raw.identifier for raw in specs)
    known = set(
        Task.objects.using(databases.current().alias)
        .filter(identifier__in=list(tasks))
        .values_list("identifier", flat=True)
    )
    return {
        "existing": existing,
        "keyed": keyed,
        "replaced": sum(1 for job in existing.values() if is_replaceable(job)),
        "detached": sum(1 for job in existing.values() if not is_replaceable(job)),
        "preserve": preserve,
        "tasks": tasks.most_common(10),
        "task_count": len(tasks),
        "new_tasks": sorted(name for name in tasks if name not in known)[:10],
        "payload_bytes": sum(len(stored_json(raw.payload).encode("utf-8")) for raw in specs),
    }


def batch_summary(jobs: list[Job], existing: dict[str, Job]) -> str:
    replaced_ids = {job.id for job in existing.values() if is_replaceable(job)}
    replaced = sum(1 for job in jobs if job.id in replaced_ids)
    added = len(jobs) - replaced
    parts = [f"added {added:,} job{'' if added == 1 else 's'}"]
    if replaced:
        parts.append(f"replaced {replaced:,} keyed job{'' if replaced == 1 else 's'}")
    detached = len(existing) - len(replaced_ids)
    if detached:
        jobs_gave = "job gave up its key" if detached == 1 else "jobs gave up their keys"
        parts.append(f"{detached:,} locked or failed {jobs_gave}")
    return "; ".join(parts)
