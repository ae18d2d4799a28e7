"""Counts for the overview, the CLI's `stats` and (later) /metrics, from the read-only models.

One pass per grouping, with a FILTER per state: the predicates come from worker_admin.states,
so every face of the console counts the same way. On a small table the pass reads every row and
the counts are exact. On a large one (more than EXACT_ROW_LIMIT rows by the planner's estimate)
it reads an evenly spread sample of id ranges through the primary key, about SAMPLE_ROWS rows,
and scales the counts to the table's size: the page says they are estimates. The sample is the
same on every refresh, so the numbers do not jitter while nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Count, Max, Min, Q

from worker_admin.counting import table_estimate
from worker_admin.installer import quote_schema
from worker_admin.models import Job
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


@dataclass(frozen=True)
class GroupCounts:
    name: str | None
    counts: StateCounts
    oldest_ready_at: datetime | None = None
    locked_by: str | None = None
    locked_at: datetime | None = None


EXACT_ROW_LIMIT = 200_000
SAMPLE_ROWS = 100_000
SAMPLE_WINDOWS = 200


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

    @property
    def exact(self) -> bool:
        return self.sampled_fraction is None

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


def _counts(row: dict, scale: float = 1.0) -> StateCounts:
    names = ("ready", "scheduled", "locked", "failed", "retrying")
    return StateCounts(**{name: round(row[name] * scale) for name in names})


def queue_stats(alias: str) -> QueueStats:
    jobs = Job.objects.using(alias)
    sample, scale = _sample(jobs, alias)
    if sample is not None:
        jobs = jobs.filter(sample)
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
    exact = sample is None
    return QueueStats(
        now=database_now(alias),
        counts=_counts(totals, scale),
        oldest_ready_at=oldest_ready_at(alias),
        # A sample cannot tell the oldest of a few thousand locks; the workers page can.
        oldest_lock_at=totals["oldest_lock_at"] if exact else None,
        by_task=[
            GroupCounts(
                row["task__identifier"],
                _counts(row, scale),
                row["oldest_ready_at"] if exact else None,
            )
            for row in by_task
        ],
        by_queue=[
            GroupCounts(
                row["job_queue__queue_name"],
                _counts(row, scale),
                locked_by=row["job_queue__locked_by"],
                locked_at=row["job_queue__locked_at"],
            )
            for row in by_queue
        ],
        sampled_fraction=None if exact else 1 / scale,
    )


def sampled_state_counts(alias: str) -> StateCounts | None:
    """Counts per state estimated from the id-window sample; None on a table small enough to
    count exactly (then callers count for real)."""
    jobs = Job.objects.using(alias)
    sample, scale = _sample(jobs, alias)
    if sample is None:
        return None
    return _counts(jobs.filter(sample).aggregate(**_state_aggregates()), scale)


def _oldest_ready():
    return Min("run_at", filter=STATE_PREDICATES[JobState.READY])


def _sample(jobs, alias: str) -> tuple[Q | None, float]:
    """A Q selecting evenly spaced id windows (~SAMPLE_ROWS rows), and the factor to scale by.

    Returns (None, 1.0) when the table is small enough to count exactly.
    """
    if table_estimate(alias, Job._meta.db_table) <= EXACT_ROW_LIMIT:
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
    sampled_rows = jobs.filter(windows).count()
    total = table_estimate(alias, Job._meta.db_table)
    return windows, (total / sampled_rows) if sampled_rows else 1.0


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


def database_now(alias: str) -> datetime:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]
