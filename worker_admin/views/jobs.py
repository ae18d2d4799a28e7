"""Jobs: the list by state with filters, search, sort and keyset pages; and one job's detail.

Pages seek from a signed cursor (the last row's sort values) instead of counting an OFFSET, so
page 500 costs what page 1 costs; tab counts stop at a bound instead of reading every row.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import indexes
from worker_admin.audit import AuditEntry
from worker_admin.counting import (
    COUNT_BOUND,
    NOT_COUNTED,
    CountValue,
    bounded_count_within,
    bounded_state_counts,
    bounded_state_counts_within,
    counting,
)
from worker_admin.estimates import Estimate, at_least, bounded
from worker_admin.filters import (
    LOCKED_ONLY_SORTS,
    PAGE_SIZES,
    SORTS,
    STATE_TABS,
    BadCursor,
    JobFilters,
    apply_filters,
    exact_search_predicate,
    filter_state,
    make_cursor,
    order_by,
    parse_filters,
    read_cursor,
    seek,
    state_predicate,
)
from worker_admin.index_advice import filter_needs, guarded
from worker_admin.models import Job
from worker_admin.redaction import may_reveal, redact
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities
from worker_admin.stats import (
    PENDING,
    available_priorities,
    database_now,
    is_large,
    reused,
    sampled_state_counts,
    state_aggregates,
)
from worker_admin.views.index_guard import jobs_narrowing
from worker_admin.views.polling import shared_fragment

LOCKED_INDEX = "console_jobs_locked"
PASS_BOUND = 1_000  # matching rows the tabs' one counting pass reads on a large table
# A tab's count of a state too rare in the sample gives up after this long (then a range).
RARE_COUNT_BUDGET_MS = 150
TAB_LABELS = {"all": "All", "retrying": "Retrying"} | {s: s.capitalize() for s in STATE_TABS[1:5]}
LARGE_PAYLOAD_BYTES = 64 * 1024


# Node pools free a lock after 4 hours, and the schema's functions then act on the job although it
# still shows as locked (GRAPHILE_WORKER.md); the last hour before that is worth a warning.
LOCK_MARK = timedelta(hours=4)
LOCK_WARNING = timedelta(hours=3)


@dataclass(frozen=True)
class LockStanding:
    """How old a job's lock is, against the 4-hour mark."""

    age: timedelta

    @property
    def past_mark(self) -> bool:
        return self.age >= LOCK_MARK

    @property
    def near_mark(self) -> bool:
        return LOCK_WARNING < self.age < LOCK_MARK

    @property
    def percent_of_mark(self) -> int:
        return min(100, int(100 * self.age / LOCK_MARK))


def lock_standing(locked_at: datetime | None, now: datetime) -> LockStanding | None:
    return LockStanding(now - locked_at) if locked_at is not None else None


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    count: Estimate | CountValue
    url: str


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    newer_url: str | None
    older_url: str | None
    first_url: str | None


def _jobs():
    return Job.objects.using(read_alias())


def _tabs(filters: JobFilters, *, wait: bool = True) -> list[Tab]:
    narrowed = apply_filters(_jobs(), filters, with_state=False)
    counts = _tab_counts(narrowed, filters, read_alias(), wait=wait)
    tabs = []
    for key in STATE_TABS:
        url = "?" + urlencode(filters.query(state=key, sort=None, cursor=None))
        tabs.append(Tab(key, TAB_LABELS[key], counts[key], url))
    return tabs


def _tab_counts(
    narrowed, filters: JobFilters, alias: str, *, wait: bool = True
) -> dict[str, Estimate | CountValue]:
    """Each tab's count, at a cost that does not grow with the table.

    Unfiltered on a large table: the overview's estimates (the same random sample, the same
    exact locked count with the opt-in index), each with its interval. Filtered: one pass over
    at most COUNT_BOUND + 1 (PASS_BOUND + 1 on a large table) matching rows gives every state
    at once, exact when the filter matches fewer; when it matches more, a fresh random sample
    narrowed by the filter estimates each state, and a state too rare in it for a useful
    interval is counted up to the bound instead ("more than 1,000" past it). A text search on
    a large table is not counted: it would read every error and payload again for the numbers.
    On a large table a filter's sampled counts are shared like the overview's sample: requests
    for the same filter within the snapshot interval (users watching one queue, on any server
    process) take one sample. With `wait=False` (a page's first load) a filter nobody has
    sampled yet shows what the pass saw ("1,000+") and the page asks for the estimates right
    after, so its rows are not held up by the sample.
    """
    large = is_large(alias)
    if not filters.active():
        estimates = sampled_state_counts(alias, wait=wait) if large else None
        if estimates is PENDING:  # asked for by the page at once (counts_pending)
            return {key: counting(0) for key in STATE_TABS}
        if estimates is not None:
            return {key: estimates.estimate(_name(key)) for key in STATE_TABS}
        return {key: _bounded(filter_state(narrowed, key)) for key in STATE_TABS}
    if not large:
        seen, reached = bounded_state_counts(narrowed, state_aggregates(), COUNT_BOUND)
        if not reached:
            return {key: Estimate.exact_count(seen[key]) for key in STATE_TABS}
        return {key: _bounded(filter_state(narrowed, key)) for key in STATE_TABS}
    if is_text_search(filters):
        return dict.fromkeys(STATE_TABS, NOT_COUNTED)
    # The pass stops early (PASS_BOUND rows): a hot filter's counts are estimates anyway, and
    # reading 10,000 matching rows to prove it costs ~100 ms at 10M jobs.
    seen, reached = bounded_state_counts(narrowed, state_aggregates(), PASS_BOUND)
    if not reached:
        return {key: Estimate.exact_count(seen[key]) for key in STATE_TABS}
    sql, params = narrowed.order_by().values("pk").query.sql_with_params()
    estimated = reused(
        f"tabs:{sql}:{params!r}", alias, lambda: _estimated(narrowed, alias), wait=wait
    )
    if estimated is PENDING:  # being counted: asked for by the page at once (counts_pending)
        return {"all": counting(PASS_BOUND)} | {key: counting(seen[key]) for key in STATE_TABS[1:]}
    counts = {"all": at_least(estimated["all"], PASS_BOUND + 1)}
    for key in STATE_TABS[1:]:
        counts[key] = at_least(estimated[key], seen[key])  # the pass saw that many: never below
    return counts


def _estimated(narrowed, alias: str) -> dict[str, Estimate]:
    """A filter's states from a fresh sample narrowed by it; a state too rare in the sample to
    help is counted up to PASS_BOUND instead, unless that would read too much of the table (no
    index serves this filter): then the sample's range stays."""
    sampled = sampled_state_counts(alias, narrowed)
    estimated = {"all": sampled.estimate("total")}
    rare = [key for key in STATE_TABS[1:] if sampled.estimate(key).method != "sampled"]
    found = _rare_counts(narrowed, rare, PASS_BOUND)
    for key in STATE_TABS[1:]:
        value = sampled.estimate(key)
        if found.get(key) is not None:
            value = bounded(found[key], PASS_BOUND, value)
        estimated[key] = value
    return estimated


def _rare_counts(narrowed, rare: list[str], bound: int) -> dict[str, int | None]:
    """The rare states' counts within one RARE_COUNT_BUDGET_MS for all of them (a budget per
    state cost 400 ms for a large queue at 10M jobs): first one pass over their union; when
    that holds more than `bound` jobs, each state on its own with what is left of the budget.
    A state not counted in time is None: the sample's range stays."""
    deadline = time.monotonic() + RARE_COUNT_BUDGET_MS / 1000
    alias = narrowed.db
    if len(rare) > 1:
        union = reduce(operator.or_, (_rare_predicate(key, alias) for key in rare))
        aggregates = {key: value for key, value in state_aggregates().items() if key in rare}
        done = bounded_state_counts_within(
            narrowed.filter(union), aggregates, bound, RARE_COUNT_BUDGET_MS
        )
        if done is not None and not done[1]:
            return {key: done[0][key] for key in rare}
    found: dict[str, int | None] = {}
    for key in rare:
        left_ms = int((deadline - time.monotonic()) * 1000)
        jobs = narrowed.filter(_rare_predicate(key, alias))
        found[key] = bounded_count_within(jobs, bound, left_ms) if left_ms > 0 else None
    return found


def _rare_predicate(key: str, alias: str) -> Q:
    """A rare state's condition for counting it. Locked jobs are those with locked_by set when
    console_jobs_locked exists, as the overview counts them (the schema sets and clears
    locked_by with locked_at): the index's predicate lets a hot task's few locked jobs be read
    from it instead of walking its millions of jobs (150 ms and a timeout at 10M)."""
    if key == "locked" and indexes.present(alias, settings.GRAPHILE_WORKER_SCHEMA, LOCKED_INDEX):
        return Q(locked_by__isnull=False)
    return state_predicate(key)


def _name(tab: str) -> str:
    return "total" if tab == "all" else tab


def _bounded(jobs, bound: int = COUNT_BOUND, sampled: Estimate | None = None) -> Estimate:
    """Up to bound + 1 rows counted: exact below the bound, else "more than bound"."""
    return bounded(jobs.order_by().values("pk")[: bound + 1].count(), bound, sampled)


def is_text_search(filters: JobFilters) -> bool:
    """The search box holds text that is no job id or key: it reads every error and payload."""
    text = filters.values.get("q")
    return bool(text) and not _jobs().filter(exact_search_predicate(text)).exists()


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
    rows = _rows(jobs, filters, forward=forward, limit=size + 1)
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


# Sorts by run_at alone that jobs_main_index (priority, run_at) serves one priority at a time.
RUN_AT_SORTS = ("run_at", "run_at_desc")
MAX_MERGED_PRIORITIES = 16


def _rows(jobs, filters: JobFilters, *, forward: bool, limit: int) -> list[Job]:
    """The page's rows in sort order, plus one to tell whether there is a next page.

    Ready and scheduled jobs sorted by run_at (the scheduled tab's default) have no index in
    that order: jobs_main_index is (priority, run_at). Reading every scheduled job to sort them
    costs seconds on millions, so on a large table the page takes the first rows of each
    priority (a range of the index each; there are a handful of distinct priorities) and merges
    them: the same rows, in the same order, as the single sorted query.
    """
    sort = filters.sort
    ordering = order_by(sort, forward=forward)
    alias = read_alias()
    merge = filters.sort_key in RUN_AT_SORTS and filters.state in ("ready", "scheduled")
    if merge and is_large(alias):
        priorities = available_priorities(alias, MAX_MERGED_PRIORITIES + 1)
        if len(priorities) <= MAX_MERGED_PRIORITIES:
            rows = []
            for priority in priorities:
                rows += jobs.filter(priority=priority).order_by(*ordering)[:limit]
            descending = sort.fields[0][1] == forward
            rows.sort(key=lambda job: (job.run_at, job.id), reverse=descending)
            return rows[:limit]
    return list(jobs.order_by(*ordering)[:limit])


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def job_list(request):
    context = {"active": "jobs", "title": "Jobs"}
    if not read_capabilities().usable:
        return render(request, "worker_admin/jobs.html", context)
    if request.htmx:
        # The list's refresh: one query and rendering per interval for every viewer of the same
        # URL and role, 304 when the rows shown did not change (views/polling.py).
        fragment = "worker_admin/jobs.html#job-results"
        return shared_fragment(request, fragment, lambda: _list_context(request), "jobs")
    return render(request, "worker_admin/jobs.html", _list_context(request))


def _list_context(request) -> dict:
    context = {"active": "jobs", "title": "Jobs"}
    filters = parse_filters(request.GET)
    # A task, queue or lock-holder filter, or the locked, failed and retrying tabs, scan every
    # job without their opt-in index: one budget for the page, then "create the index".
    with guarded(
        read_alias(),
        *filter_needs(filters.values, filters.state),
        reading="this list of jobs",
        narrow=jobs_narrowing(request.path, filters),
    ):
        page = _page(request, filters)
        now = database_now(read_alias())
        # A first load does not wait for a filter's sample; its refresh (htmx) does.
        tabs = _tabs(filters, wait=bool(request.htmx))
    for job in page.jobs:
        job.lock = lock_standing(job.locked_at, now)
    locked_tab = filters.state == "locked"
    context.update(
        filters=filters,
        values=filters.values,
        state=filters.state,
        tabs=tabs,
        counts_pending=any(getattr(tab.count, "kind", "") == "counting" for tab in tabs),
        page=page,
        sorts={k: v for k, v in SORTS.items() if locked_tab or k not in LOCKED_ONLY_SORTS},
        sort_key=filters.sort_key,
        sort_label=filters.sort.label,
        lock_sort_url="?" + urlencode(filters.query(sort="lock_age", cursor=None)),
        page_sizes=PAGE_SIZES,
        now=now,
        clear_url="?" + urlencode({"state": filters.state} if filters.state != "all" else {}),
    )
    return context


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def job_detail(request, job_id: int):
    return job_page(request, job_id)


def job_page(request, job_id: int, *, reveal: bool = False):
    """One job. Its payload is shown redacted (REDACT_PAYLOAD_PATHS) unless `reveal`, which
    only the audited reveal view (views/reveal.py, a POST) passes."""
    if not read_capabilities().usable:
        return render(request, "worker_admin/job_detail.html", {"active": "jobs", "title": "Job"})
    try:
        job = _jobs().with_state().select_related("task", "job_queue").get(id=job_id)
    except Job.DoesNotExist:
        raise Http404(
            f"There is no job {job_id}: it may have completed (completed jobs are deleted)."
        ) from None
    now = database_now(read_alias())
    lock = lock_standing(job.locked_at, now)
    payload, redacted_paths = (job.payload, []) if reveal else redact(job.payload)
    return render(
        request,
        "worker_admin/job_detail.html",
        {
            "active": "jobs",
            "title": f"Job {job.id}",
            "job": job,
            "now": now,
            "lock_age": lock.age if lock else None,
            "lock_near_release": lock is not None and lock.age > LOCK_WARNING,
            "lock_past_release": lock is not None and lock.past_mark,
            "large_payload_bytes": LARGE_PAYLOAD_BYTES,
            "payload": payload,
            "redacted_paths": redacted_paths,
            "revealed": reveal,
            "can_reveal": may_reveal(request.user),
            "audit_entries": (
                _audit_entries(job.id)
                if request.user.has_perm("worker_admin.view_auditentry")
                else None
            ),
            "audit_shown": AUDIT_ENTRIES_SHOWN,
        },
    )


AUDIT_ENTRIES_SHOWN = 10


def _audit_entries(job_id: int) -> list[AuditEntry]:
    """The newest entries that named this job (requested or changed); the audit log, filtered
    by the job, has the rest."""
    return list(
        AuditEntry.objects.for_job(job_id)
        .defer("before_image", "requested_ids", "changed_ids", "skipped_ids", "missing_ids")
        .order_by("-id")[: AUDIT_ENTRIES_SHOWN + 1]
    )
