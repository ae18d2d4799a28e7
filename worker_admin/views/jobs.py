"""Jobs: the list by state with filters, search, sort and keyset pages; and one job's detail.

Pages seek from a signed cursor (the last row's sort values) instead of counting an OFFSET, so
page 500 costs what page 1 costs; tab counts stop at a bound instead of reading every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404
from django.shortcuts import render

from worker_admin.counting import CountValue, bounded_count, total_count
from worker_admin.filters import (
    PAGE_SIZES,
    SORTS,
    STATE_TABS,
    BadCursor,
    JobFilters,
    apply_filters,
    filter_state,
    make_cursor,
    order_by,
    parse_filters,
    read_cursor,
    seek,
)
from worker_admin.models import Job
from worker_admin.redaction import may_reveal, redact
from worker_admin.schema import capabilities
from worker_admin.stats import database_now, sampled_state_counts

TAB_LABELS = {"all": "All", "retrying": "Retrying"} | {s: s.capitalize() for s in STATE_TABS[1:5]}
LARGE_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    count: CountValue
    url: str


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    newer_url: str | None
    older_url: str | None
    first_url: str | None


def _jobs():
    return Job.objects.using(settings.WORKER_DATABASE)


def _tabs(filters: JobFilters) -> list[Tab]:
    narrowed = apply_filters(_jobs(), filters, with_state=False)
    unfiltered = not filters.active()
    # Unfiltered on a large table: per-state estimates from the overview's sample, because an
    # exact count of a rare state (locked) reads the whole table. Filtered: bounded counts.
    estimates = sampled_state_counts(settings.WORKER_DATABASE) if unfiltered else None
    tabs = []
    for key in STATE_TABS:
        if key == "all" and unfiltered:
            count = total_count(_jobs(), settings.WORKER_DATABASE)
        elif estimates is not None:
            count = CountValue(getattr(estimates, key), "estimate")
        else:
            count = bounded_count(filter_state(narrowed, key))
        url = "?" + urlencode(filters.query(state=key, sort=None, cursor=None))
        tabs.append(Tab(key, TAB_LABELS[key], count, url))
    return tabs


def _page(request, filters: JobFilters) -> Page:
    sort_key, sort = filters.sort_key, filters.sort
    size = filters.page_size
    jobs = apply_filters(_jobs(), filters).with_state().select_related("task", "job_queue")
    jobs = jobs.defer("payload")
    direction, values = "after", None
    token = request.GET.get("cursor", "")
    if token:
        try:
            direction, values = read_cursor(token, sort_key)
        except BadCursor as exc:
            filters.problems.append(f"{exc}; showing the first page.")
    forward = direction == "after"
    if values is not None:
        jobs = jobs.filter(seek(sort, values, forward=forward))
    rows = list(jobs.order_by(*order_by(sort, forward=forward))[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    more_older = has_more if forward else values is not None
    more_newer = values is not None if forward else has_more

    def link(job, where: str) -> str:
        return "?" + urlencode(filters.query(cursor=make_cursor(sort_key, job, where)))

    return Page(
        jobs=rows,
        older_url=link(rows[-1], "after") if rows and more_older else None,
        newer_url=link(rows[0], "before") if rows and more_newer else None,
        first_url="?" + urlencode(filters.query(cursor=None)) if values is not None else None,
    )


def job_list(request):
    context = {"active": "jobs", "title": "Jobs"}
    if not capabilities().usable:
        return render(request, "worker_admin/jobs.html", context)
    filters = parse_filters(request.GET)
    page = _page(request, filters)
    context.update(
        filters=filters,
        values=filters.values,
        state=filters.state,
        tabs=_tabs(filters),
        page=page,
        sorts=SORTS,
        sort_key=filters.sort_key,
        sort_label=filters.sort.label,
        page_sizes=PAGE_SIZES,
        now=database_now(settings.WORKER_DATABASE),
        clear_url="?" + urlencode({"state": filters.state} if filters.state != "all" else {}),
    )
    template = "worker_admin/jobs.html#job-results" if request.htmx else "worker_admin/jobs.html"
    return render(request, template, context)


def job_detail(request, job_id: int, *, reveal: bool = False):
    """One job. Its payload is shown redacted (REDACT_PAYLOAD_PATHS) unless `reveal`, which
    only the audited reveal view (views/reveal.py) passes."""
    if not capabilities().usable:
        return render(request, "worker_admin/job_detail.html", {"active": "jobs", "title": "Job"})
    try:
        job = _jobs().with_state().select_related("task", "job_queue").get(id=job_id)
    except Job.DoesNotExist:
        raise Http404(
            f"There is no job {job_id}: it may have completed (completed jobs are deleted)."
        ) from None
    now = database_now(settings.WORKER_DATABASE)
    lock_age = now - job.locked_at if job.locked_at else None
    payload, redacted_paths = (job.payload, []) if reveal else redact(job.payload)
    return render(
        request,
        "worker_admin/job_detail.html",
        {
            "active": "jobs",
            "title": f"Job {job.id}",
            "job": job,
            "now": now,
            "lock_age": lock_age,
            "lock_near_release": lock_age is not None and lock_age.total_seconds() > 3 * 3600,
            "lock_past_release": lock_age is not None and lock_age.total_seconds() >= 4 * 3600,
            "large_payload_bytes": LARGE_PAYLOAD_BYTES,
            "payload": payload,
            "redacted_paths": redacted_paths,
            "revealed": reveal,
            "can_reveal": may_reveal(request.user),
        },
    )
