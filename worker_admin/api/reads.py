"""Reads: jobs (the jobs page's filters and keyset cursor), one job, stats, queues, tasks,
workers and lock holders, failure groups, the audit log. Any token may read; the audit log
needs the audit permission (every role has it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from ninja import Field, Path, Query, Router, Schema
from ninja.errors import HttpError

from worker_admin import catalog, failures
from worker_admin.api import serialize
from worker_admin.api.common import require_schema
from worker_admin.api.schemas import JobFilter, JobId, JobListQuery, Moment, text
from worker_admin.audit import AuditEntry
from worker_admin.filters import (
    BadCursor,
    JobFilterForm,
    JobFilters,
    apply_filters,
    make_cursor,
    order_by,
    parse_filters,
    read_cursor,
    seek,
)
from worker_admin.fleet import fleet
from worker_admin.index_advice import FAILING, LOCKED, filter_needs, guarded
from worker_admin.models import Job
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities
from worker_admin.stats import queue_stats
from worker_admin.utils import BIGINT_MAX

router = Router(tags=["reads"])


def _jobs():
    return Job.objects.using(read_alias())


def known_parameters(request, schema: type[Schema] | None = None) -> None:
    """Refuse a query parameter the endpoint does not know: a misspelt filter must not
    silently list every job."""
    known = set(schema.model_fields) if schema is not None else set()
    unknown = sorted(name for name in request.GET if name not in known)
    if unknown:
        shown = ", ".join(sorted(known)) or "none"
        raise HttpError(
            422, f"Unknown query parameter “{unknown[0][:40]}”; this endpoint takes: {shown}."
        )


def filter_data(filters: JobFilter) -> dict[str, str]:
    """The API's filter fields as the jobs page's query string (`search` is its `q`)."""
    data = {}
    for name, value in filters.model_dump(exclude_none=True).items():
        if name in ("limit", "cursor", "payload"):
            continue
        key = "q" if name == "search" else name
        data[key] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return data


def parse_job_filter(data: dict[str, str]) -> tuple[JobFilters, list[str]]:
    """The console's own parsing; each bad value is a sentence (the API refuses, not ignores)."""
    form = JobFilterForm(data)
    form.is_valid()
    problems = []
    for name, errors in form.errors.items():
        label = JobFilterForm.LABELS.get(name, name.replace("_", " "))
        label = "search" if name == "q" else label
        problems.append(f"The {label} filter is not valid: {errors[0]}")
    filters = parse_filters(data)
    problems += [p for p in filters.problems if p.startswith("The ")]  # empty ranges
    return filters, problems


@router.get("/jobs", summary="List jobs", url_name="jobs")
def list_jobs(request, filters: Query[JobListQuery]):
    """The jobs page's list: filters, search, sort, and a signed keyset cursor for the next
    page (`next_cursor`, null on the last page). Payloads only with `payload=true`."""
    known_parameters(request, JobListQuery)
    require_schema()
    data = filter_data(filters)
    if filters.sort:
        data["sort"] = filters.sort
    parsed, problems = parse_job_filter(data)
    if problems:
        raise HttpError(400, " ".join(problems))
    sort_key, sort = parsed.sort_key, parsed.sort
    needs = filter_needs(parsed.values, parsed.state)
    with guarded(read_alias(), *needs, reading="this list of jobs"):
        jobs = apply_filters(_jobs(), parsed).with_state().select_related("task", "job_queue")
        if not filters.payload:
            jobs = jobs.defer("payload")
        if filters.cursor:
            try:
                direction, values = read_cursor(filters.cursor, sort_key)
            except BadCursor as exc:
                raise HttpError(400, f"{exc}: start again without a cursor.") from None
            if direction != "after":
                raise HttpError(400, "This cursor pages backwards; the API pages forwards only.")
            jobs = jobs.filter(seek(sort, values, forward=True))
        rows = list(jobs.order_by(*order_by(sort, forward=True))[: filters.limit + 1])
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    return {
        "jobs": [serialize.job(request, row, with_payload=filters.payload) for row in rows],
        "next_cursor": make_cursor(sort_key, rows[-1], "after") if more and rows else None,
        "sort": sort_key,
        "state": parsed.state,
        "limit": filters.limit,
    }


@router.get("/jobs/{job_id}", summary="One job, payload included", url_name="job")
def get_job(request, job_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)]):
    known_parameters(request)
    require_schema()
    try:
        row = _jobs().with_state().select_related("task", "job_queue").get(id=job_id)
    except Job.DoesNotExist:
        raise HttpError(
            404, f"There is no job {job_id}: it may have completed (completed jobs are deleted)."
        ) from None
    return serialize.job(request, row, with_payload=True)


@router.get("/stats", summary="Jobs by state, task and queue", url_name="stats")
def stats(request):
    known_parameters(request)
    require_schema()
    value = queue_stats(read_alias())
    return {
        "now": value.now,
        "exact": value.exact,
        "sampled_fraction": value.sampled_fraction,
        "counts": serialize.counts(value.counts),
        "estimates": serialize.estimates(value.counts),
        "oldest_ready_at": value.oldest_ready_at,
        "oldest_ready_age_seconds": serialize.seconds(value.oldest_ready_age),
        "oldest_lock_at": value.oldest_lock_at,
        "oldest_lock_age_seconds": serialize.seconds(value.oldest_lock_age),
        "by_task": [
            {
                "task": group.name,
                "counts": serialize.counts(group.counts),
                "estimates": serialize.estimates(group.counts),
                "oldest_ready_at": group.oldest_ready_at,
            }
            for group in value.by_task
        ],
        "by_queue": [
            {
                "queue": group.name,
                "counts": serialize.counts(group.counts),
                "estimates": serialize.estimates(group.counts),
                "locked_by": group.locked_by,
                "locked_at": group.locked_at,
            }
            for group in value.by_queue
        ],
    }


class QueueQuery(Schema):
    name: text(128) | None = Field(None, description="Only queues whose name contains this.")


@router.get("/queues", summary="Queues with jobs by state and their locks", url_name="queues")
def queues(request, query: Query[QueueQuery]):
    known_parameters(request, QueueQuery)
    require_schema()
    report = catalog.queue_report(read_alias(), name_contains=query.name or "")
    return {
        "now": report.now,
        "truncated": report.truncated,
        "queues": [
            {
                "name": row.name,
                "counts": serialize.counts(row.counts),
                "estimates": serialize.estimates(row.counts),
                "oldest_ready_age_seconds": serialize.seconds(row.oldest_ready_age),
                "locked_by": row.locked_by,
                "locked_at": row.locked_at,
                "lock_age_seconds": serialize.seconds(row.lock_age),
                "lock_is_suspect": row.lock_is_suspect,
            }
            for row in report.queues
        ],
    }


@router.get("/tasks", summary="Task identifiers with jobs by state", url_name="tasks")
def tasks(request):
    known_parameters(request)
    require_schema()
    report = catalog.task_report(read_alias())
    return {
        "now": report.now,
        "tasks": [
            {
                "identifier": row.identifier,
                "counts": serialize.counts(row.counts),
                "estimates": serialize.estimates(row.counts),
                "oldest_ready_age_seconds": serialize.seconds(row.oldest_ready_age),
            }
            for row in report.tasks
        ],
    }


class WorkersQuery(Schema):
    threshold_minutes: int = Field(5, ge=1, le=24 * 60, description="Heartbeat staleness.")


@router.get("/workers", summary="Registered workers and lock holders", url_name="workers")
def workers(request, query: Query[WorkersQuery]):
    known_parameters(request, WorkersQuery)
    require_schema()
    threshold = timedelta(minutes=query.threshold_minutes)
    with guarded(read_alias(), LOCKED, reading="the workers and lock holders"):
        has_workers_table = read_capabilities().has_workers_table
        value = fleet(read_alias(), threshold, has_workers_table=has_workers_table)
    return {
        "now": value.now,
        "threshold_minutes": query.threshold_minutes,
        "workers": None
        if value.workers is None
        else [
            {
                "id": w.id,
                "started_at": w.started_at,
                "last_heartbeat_at": w.last_heartbeat_at,
                "heartbeat_age_seconds": serialize.seconds(w.heartbeat_age),
                "stale": w.stale,
                "pid": w.pid,
                "host": w.host,
                "jobs_held": w.jobs_held,
                "queues_held": w.queues_held,
            }
            for w in value.workers
        ],
        "lock_holders": [
            {
                "id": h.id,
                "kind": h.kind,
                "jobs_held": h.jobs_held,
                "queues_held": h.queues_held,
                "oldest_lock_at": h.oldest_lock_at,
                "oldest_lock_age_seconds": serialize.seconds(h.oldest_lock_age),
                "past_four_hours": h.past_four_hours,
                "registered": h.registered,
                "stale": h.stale,
            }
            for h in value.holders
        ],
    }


class FailuresQuery(Schema):
    task: text(128) | None = None
    state: Literal["both", "failed", "retrying"] = "both"
    limit: int = Field(200, ge=1, le=1_000)


@router.get("/failures", summary="Failed and retrying jobs grouped by error", url_name="failures")
def failure_groups(request, query: Query[FailuresQuery]):
    known_parameters(request, FailuresQuery)
    require_schema()
    try:
        with guarded(read_alias(), FAILING, reading="the failing jobs"):
            report = failures.failure_groups(
                read_alias(),
                task=query.task or "",
                state=failures.FailureState(query.state),
                limit=query.limit,
            )
    except failures.FailureGroupingTooSlow:
        raise HttpError(
            504, "Grouping the failures took longer than the statement timeout: filter by task."
        ) from None
    return {
        "now": report.now,
        "truncated": report.truncated,
        "groups": [
            {
                "task": g.task,
                "message": g.message,
                "failed": g.failed,
                "retrying": g.retrying,
                "first_seen": g.first_seen,
                "last_seen": g.last_seen,
                "example_job_id": g.example_job_id,
                "example_error": g.example_error,
                "example_truncated": g.example_truncated,
            }
            for g in report.groups
        ],
    }


class AuditQuery(Schema):
    user: text(150) | None = None
    action: text(40) | None = None
    outcome: Literal["done", "failed", "rejected"] | None = None
    via: Literal["web", "admin", "api", "cli", "python"] | None = None
    job: JobId | None = None
    after: Moment | None = None
    before: Moment | None = None
    before_id: int | None = Field(
        None, ge=1, le=2**63 - 1, description="Entries older than this id: the next page."
    )
    limit: int = Field(50, ge=1, le=500)


@router.get("/audit", summary="The audit log, newest first", url_name="audit")
def audit_log(request, query: Query[AuditQuery]):
    known_parameters(request, AuditQuery)
    if not request.auth.has_perm("worker_admin.view_auditentry"):
        raise HttpError(403, "Reading the audit log needs the audit permission (any role has it).")
    entries = AuditEntry.objects.all()
    for field, lookup in (
        ("user", "actor_name"),
        ("action", "action"),
        ("outcome", "outcome"),
        ("via", "via"),
        ("after", "created_at__gte"),
        ("before", "created_at__lte"),
        ("before_id", "id__lt"),
    ):
        value = getattr(query, field)
        if value is not None:
            entries = entries.filter(**{lookup: value})
    if query.job is not None:
        entries = entries.for_job(query.job)
    page = list(entries.order_by("-id")[: query.limit + 1])
    more = len(page) > query.limit
    page = page[: query.limit]
    return {
        "entries": [serialize.audit_entry(request, entry) for entry in page],
        "next_before_id": page[-1].id if more and page else None,
    }
