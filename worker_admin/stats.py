"""Counts for the overview, the CLI's `stats` and (later) /metrics, from the read-only models.

One pass per grouping, with a FILTER per state: the predicates come from worker_admin.states,
so every face of the console counts the same way. On a small table the pass reads every row and
the counts are exact. On a large one (more than EXACT_ROW_LIMIT rows by the planner's estimate)
it reads a random sample of id blocks through the primary key (SAMPLE_WINDOWS blocks, about
SAMPLE_ROWS ids; worker_admin.sampling), drawn afresh for each snapshot, and estimates each count
without bias with a 95 % interval (worker_admin.estimates). A random draw cannot fall in step
with a periodic pattern in the ids the way evenly spaced windows did (whole states or queues
never read). Counts an opt-in index makes cheap (locked, failed, retrying) are exact instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections
from django.db.models import Count, Min

from worker_admin import indexes, sampling, snapshots
from worker_admin.counting import bounded_count_within, table_estimate
from worker_admin.estimates import Estimate, bounded
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
    # On a large table: each count's estimate with its interval (and "total"); None when every
    # row was counted. The ints above are then the estimates' values.
    estimates: dict[str, Estimate] | None = field(default=None, compare=False)

    @property
    def total(self) -> int:
        if self.estimates is not None and "total" in self.estimates:
            return self.estimates["total"].value
        return self.ready + self.scheduled + self.locked + self.failed

    @property
    def exact(self) -> bool:
        return self.estimates is None or all(e.exact for e in self.estimates.values())

    def estimate(self, name: str) -> Estimate:
        """The count `name` ("total", a state or "retrying") with its interval."""
        if self.estimates is not None and name in self.estimates:
            return self.estimates[name]
        return Estimate.exact_count(self.total if name in ("total", "all") else getattr(self, name))

    @classmethod
    def from_estimates(cls, estimates: dict[str, Estimate]) -> StateCounts:
        names = ("ready", "scheduled", "locked", "failed", "retrying")
        return cls(**{n: estimates[n].value for n in names}, estimates=dict(estimates))

    def of(self, state: JobState) -> int:
        return getattr(self, state.value)

    def of_tab(self, key: str) -> int:
        """The count behind a jobs-list tab: "all", a state, or "retrying"."""
        return self.total if key == "all" else getattr(self, key)

    def replaced(self, name: str, value: Estimate) -> StateCounts:
        estimates = dict(self.estimates or {}) | {name: value}
        if name == "total":
            return replace(self, estimates=estimates)
        return replace(self, **{name: value.value}, estimates=estimates)


@dataclass(frozen=True)
class GroupCounts:
    name: str | None
    counts: StateCounts
    oldest_ready_at: datetime | None = None
    locked_by: str | None = None
    locked_at: datetime | None = None


EXACT_ROW_LIMIT = 200_000
SAMPLE_ROWS = 20_000  # 200 random blocks of 100 ids: ~10-20 ms at 10M rows
SAMPLE_WINDOWS = 200
# A bounded count reads at most this many rows through an opt-in index (failing jobs).
INDEXED_COUNT_BOUND = 10_000
INDEXED_COUNT_BUDGET_MS = 150
# Open tabs poll every few seconds: within this many seconds, every request shares one read of
# the sample (see reused); None: the console's SHARED_SNAPSHOT_SECONDS.
SAMPLE_REUSE_SECONDS: float | None = None
# The overview lists at most this many tasks and queues (the queues page pages through more).
GROUP_LIMIT = 500


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


def _counts(row: dict) -> StateCounts:
    names = ("ready", "scheduled", "locked", "failed", "retrying")
    return StateCounts(**{name: row[name] for name in names})


@dataclass(frozen=True)
class SampledGroups:
    """State counts (with intervals) for the table, per task id and per queue id, from one
    random sample of id blocks (worker_admin.sampling)."""

    totals: StateCounts
    by_task: dict[int, StateCounts]
    by_queue: dict[int, StateCounts]
    fraction: float  # the share of the id range that was read
    unseen: StateCounts  # the counts of a task or queue the sample did not see: upper bounds

    def of_task(self, task_id: int) -> StateCounts:
        return self.by_task.get(task_id, self.unseen)

    def of_queue(self, queue_id: int) -> StateCounts:
        return self.by_queue.get(queue_id, self.unseen)


PENDING = object()  # reused(wait=False): nobody has taken this reading lately; it is being taken


def reused(name: str, alias: str, compute, *, wait: bool = True):
    """compute(), or the shared snapshot of it taken less than SAMPLE_REUSE_SECONDS ago (the
    console's SHARED_SNAPSHOT_SECONDS unless set) by any process (worker_admin/snapshots.py).

    Twenty users polling every few seconds, whichever server process answers them, then cost
    one sample read per interval, not twenty. The key holds the database and the sampling
    parameters, so a changed setting (or another database) never reads a stale entry. Only for
    a large table's readings (samples, and the counts taken with them); a small table is always
    counted afresh. With `wait=False`, PENDING instead of taking a reading nobody has taken
    lately: it is taken right after the response (snapshots.prepare), and the page shows the
    rest now and asks for this part at once.
    """
    seconds = SAMPLE_REUSE_SECONDS
    if seconds is None:
        seconds = settings.SHARED_SNAPSHOT_SECONDS
    if seconds <= 0:  # nothing is shared: nothing to ask for later either
        return compute()
    database = connections[alias].settings_dict.get("NAME")
    key = f"reading:{name}:{alias}:{database}:{EXACT_ROW_LIMIT}:{SAMPLE_ROWS}:{SAMPLE_WINDOWS}"
    if not wait:
        found = snapshots.prepare(key, compute, seconds=seconds)
        return found.value if found is not None else PENDING
    return snapshots.shared(key, compute, seconds=seconds).value


def sampled_groups(alias: str, *, wait: bool = True) -> SampledGroups | None:
    """One read of the sample, grouped by task and by queue; None on a table small enough to
    count. The overview, the queues page, the tasks page and the jobs tabs share it (and its
    exact locked/failing counts), so they show the same numbers within a refresh interval."""
    if not is_large(alias):
        return None
    return reused("groups", alias, lambda: _sampled_groups(alias), wait=wait)


def _draw(alias: str, narrowed=None, dimensions=sampling.DIMENSIONS) -> sampling.Sample | None:
    width = max(1, SAMPLE_ROWS // SAMPLE_WINDOWS)
    return sampling.draw(alias, SAMPLE_WINDOWS, width, narrowed, dimensions)


def _sampled_groups(alias: str) -> SampledGroups | None:
    sample = _draw(alias)
    if sample is None:
        return None
    totals = _exact_where_indexed(alias, StateCounts.from_estimates(sample.estimates("all")))

    def counts(dimension: str, key: int) -> StateCounts:
        return StateCounts.from_estimates(sample.estimates(dimension, key))

    return SampledGroups(
        totals=totals,
        by_task={key: counts("task", key) for key in sample.keys("task")},
        by_queue={key: counts("queue", key) for key in sample.keys("queue")},
        fraction=sample.design.fraction,
        unseen=counts("none", -1),
    )


def _exact_where_indexed(alias: str, counts: StateCounts) -> StateCounts:
    """The sampled totals, with the counts an opt-in index makes cheap replaced by exact ones:
    locked jobs (console_jobs_locked, all of them) and failed/retrying jobs (console_jobs_failing,
    up to INDEXED_COUNT_BOUND rows, beyond which the sample's interval stays)."""
    schema = settings.GRAPHILE_WORKER_SCHEMA
    jobs = Job.objects.using(alias)
    if indexes.present(alias, schema, "console_jobs_locked"):
        n = jobs.filter(locked_by__isnull=False).count()
        counts = counts.replaced("locked", Estimate.exact_count(n))
    if indexes.present(alias, schema, "console_jobs_failing"):
        failing = jobs.filter(attempts__gt=0, locked_at__isnull=True)
        for name, predicate in (
            ("failed", STATE_PREDICATES[JobState.FAILED]),
            ("retrying", RETRYING),
        ):
            # Bounded in rows and in time: many retrying jobs among few failed ones would make
            # the failed count read them all (then the sample's interval stays).
            found = bounded_count_within(
                failing.filter(predicate), INDEXED_COUNT_BOUND, INDEXED_COUNT_BUDGET_MS
            )
            if found is not None:
                counts = counts.replaced(
                    name, bounded(found, INDEXED_COUNT_BOUND, counts.estimate(name))
                )
    return counts


def queue_stats(alias: str) -> QueueStats:
    jobs = Job.objects.using(alias)
    sampled = sampled_groups(alias)
    if sampled is None:
        return _exact_queue_stats(jobs, alias)
    # Every task and queue is listed, seen by the sample or not (tables of tens to hundreds of
    # rows): one the sample missed shows an upper bound, never a silent absence.
    tasks = Task.objects.using(alias).order_by("identifier").values_list("id", "identifier")
    queues = JobQueue.objects.using(alias).order_by("queue_name")
    locked_exact = sampled.totals.estimate("locked").exact
    return QueueStats(
        now=database_now(alias),
        counts=sampled.totals,
        oldest_ready_at=oldest_ready_at(alias),
        oldest_lock_at=_oldest_lock_at(alias) if locked_exact else None,
        locked_exact=locked_exact,
        by_task=[GroupCounts(name, sampled.of_task(tid)) for tid, name in tasks[:GROUP_LIMIT]],
        by_queue=[
            GroupCounts(
                q.queue_name, sampled.of_queue(q.id), locked_by=q.locked_by, locked_at=q.locked_at
            )
            for q in queues[:GROUP_LIMIT]
        ],
        sampled_fraction=sampled.fraction,
    )


def _oldest_lock_at(alias: str) -> datetime | None:
    """The oldest lock, through the opt-in console_jobs_locked index (only called with it)."""
    jobs = Job.objects.using(alias).filter(locked_by__isnull=False)
    return jobs.aggregate(oldest=Min("locked_at"))["oldest"]


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
        .annotate(**_state_aggregates(), oldest_ready_at=_oldest_ready())
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
                row["oldest_ready_at"],
                locked_by=row["job_queue__locked_by"],
                locked_at=row["job_queue__locked_at"],
            )
            for row in by_queue
        ],
    )


def sampled_state_counts(alias: str, narrowed=None, *, wait: bool = True) -> StateCounts | None:
    """Counts per state, with intervals, from a random sample of id blocks; None on a table
    small enough to count exactly (then callers count for real). Unfiltered, they are the
    overview's (the same read, the same exact locked count). `narrowed` (a Job queryset)
    counts a filter's rows in a fresh sample."""
    if not is_large(alias):
        return None
    if narrowed is None:
        sampled = sampled_groups(alias, wait=wait)
        if sampled is None or sampled is PENDING:  # PENDING: being taken (wait=False)
            return sampled
        return sampled.totals
    sample = _draw(alias, narrowed, ("all",))
    if sample is None:
        return None
    return StateCounts.from_estimates(sample.estimates("all"))


def is_large(alias: str) -> bool:
    """More rows than EXACT_ROW_LIMIT by the planner's estimate: pages estimate or bound."""
    return table_estimate(alias, Job._meta.db_table) > EXACT_ROW_LIMIT


def _oldest_ready():
    return Min("run_at", filter=STATE_PREDICATES[JobState.READY])


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
