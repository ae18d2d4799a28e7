"""Counts for the overview, the CLI's `stats` and (later) /metrics, from the read-only models.

One pass per grouping, with a FILTER per state: the predicates come from worker_admin.states,
so every face of the console counts the same way. On a small table the pass reads every row and
the counts are exact. On a large one (more than EXACT_ROW_LIMIT rows by the planner's estimate)
it reads an evenly spread sample of id ranges through the primary key, about SAMPLE_ROWS rows,
and scales the counts to the table's size: the page says they are estimates. The sample is the
same on every refresh, so the numbers do not jitter while nothing changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Count, Max, Min, Q

from worker_admin import indexes
from worker_admin.counting import table_estimate
from worker_admin.installer import quote_schema
from worker_admin.models import Job, JobQueue, Task
from worker_admin.states import RETRYING, STATE_PREDICATES, JobState


@dataclass(frozen=True)
class StateCounts:
    ready: int = 0
    scheduled: int = 0
    locked: int = 0
    failed: int = 0
    retrying: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.scheduled + self.locked + self.failed

    def of(self, state: JobState) -> int:
        return getattr(self, state.value)

    def of_tab(self, key: str) -> int:
        """The count behind a jobs-list tab: "all", a state, or "retrying"."""
        return self.total if key == "all" else getattr(self, key)


@dataclass(frozen=True)
class GroupCounts:
    name: str | None
    counts: StateCounts
    oldest_ready_at: datetime | None = None
    locked_by: str | None = None
    locked_at: datetime | None = None


EXACT_ROW_LIMIT = 200_000
SAMPLE_ROWS = 20_000  # 200 windows of 100 ids: ~10-20 ms at 10M rows
SAMPLE_WINDOWS = 200
# Open tabs poll every few seconds: within this many seconds, requests in the same process share
# one read of the sample (the numbers are estimates anyway; see _shared).
SAMPLE_REUSE_SECONDS = 2.0
_reused: dict[tuple, tuple[float, object]] = {}


@dataclass(frozen=True)
class QueueStats:
    now: datetime
    counts: StateCounts
    oldest_ready_at: datetime | None
    oldest_lock_at: datetime | None
    by_task: list[GroupCounts] = field(default_factory=list)
    by_queue: list[GroupCounts] = field(default_factory=list)
    # None when every row was counted; else the share of the table the counts were read from.
    sampled_fraction: float | None = None
    # Locked jobs are few and may all fall between the sample's windows: they are counted
    # exactly whenever the opt-in index makes that cheap (worker_admin/indexes.py).
    locked_exact: bool = False

    @property
    def exact(self) -> bool:
        return self.sampled_fraction is None

    @property
    def locked_is_exact(self) -> bool:
        return self.exact or self.locked_exact

    @property
    def oldest_ready_age(self) -> timedelta | None:
        return self.now - self.oldest_ready_at if self.oldest_ready_at else None

    @property
    def oldest_lock_age(self) -> timedelta | None:
        return self.now - self.oldest_lock_at if self.oldest_lock_at else None


def _state_aggregates() -> dict:
    aggregates = {state.value: Count("id", filter=q) for state, q in STATE_PREDICATES.items()}
    aggregates["retrying"] = Count("id", filter=RETRYING)
    return aggregates


def state_aggregates() -> dict:
    """COUNT … FILTER per state (and retrying), for `aggregate()` or `annotate()`."""
    return _state_aggregates()


def _counts(row: dict, scale: float = 1.0) -> StateCounts:
    names = ("ready", "scheduled", "locked", "failed", "retrying")
    return StateCounts(**{name: round(row[name] * scale) for name in names})


@dataclass(frozen=True)
class SampledGroups:
    """State counts per task id and per queue id, scaled from the id-window sample."""

    totals: StateCounts
    by_task: dict[int, StateCounts]
    by_queue: dict[int, StateCounts]
    fraction: float  # the share of the table that was read


def _shared(name: str, alias: str, compute):
    """compute(), or its result from less than SAMPLE_REUSE_SECONDS ago in this process.

    Twenty users polling every two seconds then cost one sample read per interval, not twenty.
    The key holds the database and the sampling parameters, so a changed setting (or another
    database) never reads a stale entry.
    """
    key = (
        name,
        alias,
        connections[alias].settings_dict.get("NAME"),
        EXACT_ROW_LIMIT,
        SAMPLE_ROWS,
        SAMPLE_WINDOWS,
    )
    now = time.monotonic()
    hit = _reused.get(key)
    if hit is not None and now - hit[0] < SAMPLE_REUSE_SECONDS:
        return hit[1]
    value = compute()
    _reused[key] = (now, value)
    return value


def sampled_groups(alias: str) -> SampledGroups | None:
    """One read of the sample, grouped by (task, queue); None on a table small enough to count.

    The totals, the per-task and the per-queue counts are sums of those groups, so the overview,
    the queues page and the tasks page each read the sample once, not once per grouping.
    """
    if not is_large(alias):
        return None
    return _shared("groups", alias, lambda: _sampled_groups(alias))


def _sampled_groups(alias: str) -> SampledGroups | None:
    jobs = Job.objects.using(alias)
    sample, _ = _sample(jobs, alias)
    if sample is None:
        return None
    groups = list(
        jobs.filter(sample)
        .values("task_id", "job_queue_id")
        .annotate(**_state_aggregates(), n=Count("id"))
        .order_by()
    )
    sampled_rows = sum(row["n"] for row in groups)
    total = table_estimate(alias, Job._meta.db_table)
    scale = total / sampled_rows if sampled_rows else 1.0
    names = ("ready", "scheduled", "locked", "failed", "retrying")
    totals, by_task, by_queue = _summed(groups, names)
    return SampledGroups(
        totals=_counts(totals, scale),
        by_task={tid: _counts(row, scale) for tid, row in by_task.items()},
        by_queue={qid: _counts(row, scale) for qid, row in by_queue.items()},
        fraction=1 / scale,
    )


def queue_stats(alias: str) -> QueueStats:
    jobs = Job.objects.using(alias)
    sampled = sampled_groups(alias)
    if sampled is None:
        return _exact_queue_stats(jobs, alias)
    task_names = dict(
        Task.objects.using(alias).filter(id__in=sampled.by_task).values_list("id", "identifier")
    )
    queues = {
        q["id"]: q
        for q in JobQueue.objects.using(alias)
        .filter(id__in=list(sampled.by_queue))
        .values("id", "queue_name", "locked_by", "locked_at")
    }
    counts, oldest_lock_at, locked_exact = _locked_exactly_if_indexed(alias, sampled.totals)
    return QueueStats(
        now=database_now(alias),
        counts=counts,
        oldest_ready_at=oldest_ready_at(alias),
        oldest_lock_at=oldest_lock_at,  # None from a sample: only an index walk can tell it
        locked_exact=locked_exact,
        by_task=sorted(
            (
                GroupCounts(task_names.get(tid, f"#{tid}"), counts)
                for tid, counts in sampled.by_task.items()
            ),
            key=lambda g: g.name or "",
        ),
        by_queue=sorted(
            (
                GroupCounts(
                    queues[qid]["queue_name"],
                    counts,
                    locked_by=queues[qid]["locked_by"],
                    locked_at=queues[qid]["locked_at"],
                )
                for qid, counts in sampled.by_queue.items()
                if qid in queues
            ),
            key=lambda g: g.name or "",
        ),
        sampled_fraction=sampled.fraction,
    )


def _locked_exactly_if_indexed(
    alias: str, sampled: StateCounts
) -> tuple[StateCounts, datetime | None, bool]:
    """The sampled counts with the locked count made exact, and the oldest lock, when the opt-in
    console_jobs_locked index exists (an index-only read of the running jobs); else as sampled."""
    if not indexes.present(alias, settings.GRAPHILE_WORKER_SCHEMA, "console_jobs_locked"):
        return sampled, None, False
    locked = (
        Job.objects.using(alias)
        .filter(locked_by__isnull=False)
        .aggregate(n=Count("id"), oldest=Min("locked_at"))
    )
    return replace(sampled, locked=locked["n"]), locked["oldest"], True


def _summed(groups: list[dict], names: tuple[str, ...]) -> tuple[dict, dict, dict]:
    """Totals, per-task and per-queue sums of (task, queue) group rows."""
    totals = dict.fromkeys(names, 0)
    by_task: dict = {}
    by_queue: dict = {}
    for row in groups:
        for name in names:
            totals[name] += row[name]
        task = by_task.setdefault(row["task_id"], dict.fromkeys(names, 0))
        for name in names:
            task[name] += row[name]
        if row["job_queue_id"] is not None:
            queue = by_queue.setdefault(row["job_queue_id"], dict.fromkeys(names, 0))
            for name in names:
                queue[name] += row[name]
    return totals, by_task, by_queue


def _exact_queue_stats(jobs, alias: str) -> QueueStats:
    """Every row counted: the table is small enough (EXACT_ROW_LIMIT)."""
    totals = jobs.aggregate(**_state_aggregates(), oldest_lock_at=Min("locked_at"))
    by_task = (
        jobs.values("task__identifier")
        .annotate(**_state_aggregates(), oldest_ready_at=_oldest_ready())
        .order_by("task__identifier")
    )
    by_queue = (
        jobs.filter(job_queue__isnull=False)
        .values("job_queue__queue_name", "job_queue__locked_by", "job_queue__locked_at")
        .annotate(**_state_aggregates())
        .order_by("job_queue__queue_name")
    )
    return QueueStats(
        now=database_now(alias),
        counts=_counts(totals),
        oldest_ready_at=oldest_ready_at(alias),
        oldest_lock_at=totals["oldest_lock_at"],
        by_task=[
            GroupCounts(row["task__identifier"], _counts(row), row["oldest_ready_at"])
            for row in by_task
        ],
        by_queue=[
            GroupCounts(
                row["job_queue__queue_name"],
                _counts(row),
                locked_by=row["job_queue__locked_by"],
                locked_at=row["job_queue__locked_at"],
            )
            for row in by_queue
        ],
    )


def sampled_state_counts(alias: str, narrowed=None) -> StateCounts | None:
    """Counts per state estimated from the id-window sample; None on a table small enough to
    count exactly (then callers count for real). `narrowed` (a Job queryset) restricts the
    sample to a filter's rows; the scale stays the whole table's."""
    if not is_large(alias):
        return None
    if narrowed is None:
        return _shared("states", alias, lambda: _sampled_state_counts(alias, None))
    return _sampled_state_counts(alias, narrowed)


def _sampled_state_counts(alias: str, narrowed) -> StateCounts | None:
    jobs = Job.objects.using(alias)
    sample, scale = _sample(jobs, alias)
    if sample is None:
        return None
    base = narrowed if narrowed is not None else jobs
    return _counts(base.filter(sample).aggregate(**_state_aggregates()), scale)


def is_large(alias: str) -> bool:
    """More rows than EXACT_ROW_LIMIT by the planner's estimate: pages estimate or bound."""
    return table_estimate(alias, Job._meta.db_table) > EXACT_ROW_LIMIT


def _oldest_ready():
    return Min("run_at", filter=STATE_PREDICATES[JobState.READY])


def _sample(jobs, alias: str) -> tuple[Q | None, float]:
    """A Q selecting evenly spaced id windows (~SAMPLE_ROWS rows), and the factor to scale by.

    Returns (None, 1.0) when the table is small enough to count exactly. The factor assumes the
    windows are full (ids are dense: completed jobs leave gaps, so it may overstate a little);
    queue_stats recomputes it from the rows it actually read.
    """
    total = table_estimate(alias, Job._meta.db_table)
    if total <= EXACT_ROW_LIMIT:
        return None, 1.0
    bounds = jobs.aggregate(low=Min("id"), high=Max("id"))  # both read from the primary key
    low, high = bounds["low"], bounds["high"]
    if low is None or high - low + 1 <= SAMPLE_ROWS:
        return None, 1.0
    step = (high - low + 1) // SAMPLE_WINDOWS
    width = max(1, SAMPLE_ROWS // SAMPLE_WINDOWS)
    windows = Q()
    for k in range(SAMPLE_WINDOWS):
        start = low + k * step
        windows |= Q(id__gte=start, id__lt=start + width)
    # Ids are dense in a busy table, so the windows hold about SAMPLE_ROWS of the total rows.
    density = total / (high - low + 1)
    sampled = max(1.0, SAMPLE_WINDOWS * width * min(1.0, density))
    return windows, total / sampled


def oldest_ready_at(alias: str) -> datetime | None:
    """run_at of the longest-waiting ready job, exact at any table size.

    Walks the distinct priorities of the available jobs through jobs_main_index (priority,
    run_at WHERE is_available) and takes the earliest run_at of each: a few index probes
    instead of reading every waiting job. is_available is the schema's own generated column
    for "unlocked with attempts left"; a ready job is one of those whose run_at has come.
    """
    jobs = f"{quote_schema(settings.GRAPHILE_WORKER_SCHEMA)}._private_jobs"
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE priorities AS (
                (SELECT priority FROM {jobs} WHERE is_available = true
                 ORDER BY priority LIMIT 1)
                UNION ALL
                SELECT (SELECT j.priority FROM {jobs} j
                        WHERE j.is_available = true AND j.priority > p.priority
                        ORDER BY j.priority LIMIT 1)
                FROM priorities p WHERE p.priority IS NOT NULL
            )
            SELECT min((SELECT j.run_at FROM {jobs} j
                        WHERE j.is_available = true AND j.priority = p.priority
                        ORDER BY j.run_at LIMIT 1))
            FROM priorities p WHERE p.priority IS NOT NULL
            """
        )
        earliest = cursor.fetchone()[0]
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
    return earliest if earliest is not None and earliest <= now else None


def available_priorities(alias: str, limit: int) -> list[int]:
    """The distinct priorities of available jobs, lowest first, at most `limit` of them.

    A skip scan of jobs_main_index: one index probe per distinct priority.
    """
    jobs = f"{quote_schema(settings.GRAPHILE_WORKER_SCHEMA)}._private_jobs"
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE priorities AS (
                (SELECT priority, 1 AS n FROM {jobs} WHERE is_available = true
                 ORDER BY priority LIMIT 1)
                UNION ALL
                SELECT (SELECT j.priority FROM {jobs} j
                        WHERE j.is_available = true AND j.priority > p.priority
                        ORDER BY j.priority LIMIT 1), p.n + 1
                FROM priorities p WHERE p.priority IS NOT NULL AND p.n < %s
            )
            SELECT priority FROM priorities WHERE priority IS NOT NULL
            """,
            [limit],
        )
        return [row[0] for row in cursor.fetchall()]


def database_now(alias: str) -> datetime:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]
