"""What /metrics says about the queue, read from the worker schema at scrape time.

A custom prometheus_client collector: every scrape reads the numbers the overview and the
workers page show, through the same code where it fits (stats.queue_stats, the state
predicates, the Worker model's staleness rule), so a dashboard and an alert never disagree with
the console. On a large jobs table the counts per state, task and queue are the overview's
estimates from a random sample, graphile_console_counts_estimated says so and
graphile_worker_jobs_interval gives each state's 95 % interval.

The lock and worker facts are exact at any size, from one grouped pass over the locked jobs.
fleet.fleet() would give the holders too, but it is a pass of its own, and no index serves
either (unless the opt-in console_jobs_locked index is there): on 10M jobs each pass took
2-3 s, so one pass gives everything here, the exact number of locked jobs included, which a
sample of id blocks can miss entirely.

Nothing here is stored between scrapes except the capabilities cache; the console's own request
and query timings are in worker_admin.instrumentation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Min, Q, Value
from django.db.models.functions import Now
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from worker_admin import crons, databases
from worker_admin.audit import AuditEntry
from worker_admin.fleet import DEFAULT_THRESHOLD
from worker_admin.models import Job, JobQueue, Worker
from worker_admin.replica import read_alias
from worker_admin.schema import Capabilities, capabilities
from worker_admin.states import STATE_PREDICATES, JobState
from worker_admin.stats import GroupCounts, QueueStats, StateCounts, queue_stats

logger = logging.getLogger(__name__)

LONG_LOCK = timedelta(hours=1)
# The audit action that the console's sweep (web and CLI) records when it has run.
SWEEP_ACTION = "sweep"
# One series per task or queue and state: a fleet with a queue per tenant could otherwise send
# Prometheus tens of thousands of series. The largest are kept; the rest are summed into OTHER.
MAX_LABELLED_GROUPS = 1000
OTHER = "__other__"


def stale_worker_threshold() -> timedelta:
    """STALE_WORKER_THRESHOLD_SECONDS when set, else the workers page's default (5 minutes)."""
    seconds = getattr(settings, "STALE_WORKER_THRESHOLD_SECONDS", None)
    return timedelta(seconds=seconds) if seconds else timedelta(minutes=DEFAULT_THRESHOLD)


@dataclass(frozen=True)
class LockFacts:
    locked: int
    over_one_hour: int
    oldest_lock_at: datetime | None
    holders: int
    unregistered_holders: int
    registered_workers: int | None  # None: no recovery extension, nothing registers
    stale_workers: int | None


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reads; None parts were not readable (see `problem`)."""

    caps: Capabilities | None
    stats: QueueStats | None = None
    locks: LockFacts | None = None
    last_sweep_at: datetime | None = None
    problem: str | None = None


def read_snapshot(alias: str, threshold: timedelta) -> Snapshot:
    try:
        last_sweep_at = _last_sweep_at()
    except DatabaseError as exc:  # the console's own tables: the queue facts may still be there
        logger.warning("/metrics could not read the audit log: %s", exc)
        last_sweep_at = None
    try:
        caps = capabilities(alias)
        if caps.problem is not None:
            return Snapshot(caps, last_sweep_at=last_sweep_at, problem=caps.problem)
        return Snapshot(
            caps,
            stats=queue_stats(alias),
            locks=lock_facts(alias, threshold, has_workers_table=caps.has_workers_table),
            last_sweep_at=last_sweep_at,
        )
    except DatabaseError as exc:
        logger.warning("/metrics could not read the worker schema: %s", exc)
        return Snapshot(None, last_sweep_at=last_sweep_at, problem="database error")


def lock_facts(alias: str, threshold: timedelta, *, has_workers_table: bool) -> LockFacts:
    """Locks and workers, exact: one grouped pass over the locked jobs, then the small tables."""
    per_holder = list(
        Job.objects.using(alias)
        .filter(STATE_PREDICATES[JobState.LOCKED])
        .values("locked_by")
        .annotate(
            locked=Count("id"),
            over_one_hour=Count("id", filter=Q(locked_at__lt=Now() - Value(LONG_LOCK))),
            oldest_lock_at=Min("locked_at"),
        )
        .order_by()
    )
    holders = {row["locked_by"] for row in per_holder} | set(
        JobQueue.objects.using(alias)
        .filter(locked_at__isnull=False)
        .values_list("locked_by", flat=True)
    )
    holders.discard(None)
    workers = Worker.objects.using(alias)
    registered = set(workers.values_list("id", flat=True)) if has_workers_table else set()
    return LockFacts(
        locked=sum(row["locked"] for row in per_holder),
        over_one_hour=sum(row["over_one_hour"] for row in per_holder),
        oldest_lock_at=min((row["oldest_lock_at"] for row in per_holder), default=None),
        holders=len(holders),
        unregistered_holders=len(holders - registered),
        registered_workers=len(registered) if has_workers_table else None,
        # The workers page's rule: a heartbeat older than the threshold, by the database clock.
        stale_workers=workers.stale(threshold).count() if has_workers_table else None,
    )


def _last_sweep_at() -> datetime | None:
    entry = (
        AuditEntry.objects.filter(
            action=SWEEP_ACTION,
            outcome=AuditEntry.Outcome.DONE,
            worker_schema=settings.GRAPHILE_WORKER_SCHEMA,
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return entry


# -- families ------------------------------------------------------------------------------

STATES = [state.value for state in JobState]


def _gauge(name: str, documentation: str, value: float | None = None, labels=()):
    family = GaugeMetricFamily(name, documentation, labels=list(labels) or None)
    if value is not None:
        family.add_metric([], value)
    return family


def _seconds(delta: timedelta | None) -> float:
    return max(delta.total_seconds(), 0.0) if delta is not None else 0.0


def fold_groups(groups: Iterable[GroupCounts], limit: int) -> list[tuple[str, StateCounts]]:
    """(label, counts) per group, the `limit` largest by total; the rest summed into OTHER."""
    ranked = sorted(groups, key=lambda g: (-g.counts.total, str(g.name)))
    kept = [(str(g.name), g.counts) for g in ranked[:limit]]
    rest = ranked[limit:]
    if rest:
        names = ("ready", "scheduled", "locked", "failed", "retrying")
        summed = StateCounts(**{n: sum(getattr(g.counts, n) for g in rest) for n in names})
        kept.append((OTHER, summed))
    return sorted(kept)


def _grouped(kind: str, groups: list[GroupCounts]) -> Iterator[Metric]:
    by_state = GaugeMetricFamily(
        f"graphile_worker_{kind}_jobs",
        f"Jobs per {kind} and state (estimated when graphile_console_counts_estimated is 1; "
        f'{kind}s past the {MAX_LABELLED_GROUPS:,} largest are summed as {kind}="{OTHER}").',
        labels=[kind, "state"],
    )
    retrying = GaugeMetricFamily(
        f"graphile_worker_{kind}_jobs_retrying",
        f"Jobs per {kind} that failed at least once and will run again (also counted as ready "
        "or scheduled).",
        labels=[kind],
    )
    for name, counts in fold_groups(groups, MAX_LABELLED_GROUPS):
        for state in STATES:
            by_state.add_metric([name, state], getattr(counts, state))
        retrying.add_metric([name], counts.retrying)
    yield by_state
    yield retrying


def _intervals(stats: QueueStats, locked: int) -> Metric:
    """The 95 % interval of each estimated count, as the overview shows it on hover."""
    family = GaugeMetricFamily(
        "graphile_worker_jobs_interval",
        "95 % interval of each state's job count (and retrying, total) when the counts are "
        "estimated from a random sample: bound is low or high (high absent when unbounded). "
        "Exact counts have low = high.",
        labels=["state", "bound"],
    )
    for name in (*STATES, "retrying", "total"):
        value = stats.counts.estimate(name)
        low, high = (locked, locked) if name == JobState.LOCKED.value else (value.low, value.high)
        family.add_metric([name, "low"], low)
        if high is not None:
            family.add_metric([name, "high"], high)
    return family


def queue_families(snapshot: Snapshot) -> Iterator[Metric]:
    stats, locks = snapshot.stats, snapshot.locks
    jobs = GaugeMetricFamily(
        "graphile_worker_jobs",
        "Jobs in each state: ready (run_at has passed), scheduled (waiting for run_at), locked "
        "(held by a worker), failed (no attempts left). Locked is exact; the others are "
        "estimated when graphile_console_counts_estimated is 1.",
        labels=["state"],
    )
    for state in STATES:
        exact_locked = state == JobState.LOCKED.value
        jobs.add_metric([state], locks.locked if exact_locked else getattr(stats.counts, state))
    yield jobs
    if not stats.exact:
        yield _intervals(stats, locks.locked)
    yield _gauge(
        "graphile_worker_jobs_retrying",
        "Jobs that failed at least once and will run again (also counted as ready or scheduled).",
        stats.counts.retrying,
    )
    yield from _grouped("task", stats.by_task)
    # Jobs without a queue run in parallel and are not in the queue families.
    yield from _grouped("queue", stats.by_queue)
    yield _gauge(
        "graphile_worker_oldest_ready_job_age_seconds",
        "How long the longest-waiting ready job has waited since its run_at (queue latency); 0 "
        "when no job is ready. Exact at any table size.",
        _seconds(stats.oldest_ready_age),
    )
    yield _gauge(
        "graphile_worker_jobs_locked_over_one_hour",
        "Locked jobs whose lock was taken more than one hour ago. Exact.",
        locks.over_one_hour,
    )
    yield _gauge(
        "graphile_worker_oldest_job_lock_age_seconds",
        "Age of the oldest lock on a job; 0 when no job is locked. Exact.",
        _seconds(stats.now - locks.oldest_lock_at if locks.oldest_lock_at else None),
    )
    if locks.registered_workers is not None:  # absent without the recovery extension
        yield _gauge(
            "graphile_worker_registered_workers",
            "Workers registered in _private_workers (the worker-recovery extension).",
            locks.registered_workers,
        )
        yield _gauge(
            "graphile_worker_stale_registered_workers",
            "Registered workers whose last heartbeat is older than "
            "graphile_console_stale_worker_threshold_seconds.",
            locks.stale_workers,
        )
    yield _gauge(
        "graphile_worker_lock_holders",
        "Distinct worker ids holding a job or queue lock (locked_by).",
        locks.holders,
    )
    yield _gauge(
        "graphile_worker_unregistered_lock_holders",
        "Lock holders with no registration in _private_workers: Node workers and pools, which "
        "never register, or Rust workers whose registration is gone.",
        locks.unregistered_holders,
    )


def console_families(snapshot: Snapshot, threshold: timedelta) -> Iterator[Metric]:
    caps = snapshot.caps
    if caps is not None:
        info = InfoMetricFamily(
            "graphile_worker_schema",
            "The worker schema the console reads: its name, flavour and latest migration.",
            labels=["schema", "flavour", "migration"],
        )
        info.add_metric([caps.schema, caps.flavour.value, str(caps.latest_migration or "")], {})
        yield info
    if snapshot.stats is not None:
        stats = snapshot.stats
        yield _gauge(
            "graphile_console_counts_estimated",
            "1 when the job counts per state, task and queue are estimates from a random sample "
            "of a large jobs table (as on the overview; graphile_worker_jobs_interval gives "
            "their 95 % intervals), 0 when every row was counted.",
            0 if stats.exact else 1,
        )
        yield _gauge(
            "graphile_console_counts_sample_ratio",
            "Share of the jobs table the job counts were read from (1 when exact).",
            1.0 if stats.exact else stats.sampled_fraction,
        )
    yield _gauge(
        "graphile_console_stale_worker_threshold_seconds",
        "Heartbeat age past which a registered worker counts as stale in these metrics.",
        threshold.total_seconds(),
    )
    if snapshot.last_sweep_at is not None:  # absent until the first sweep through the console
        yield _gauge(
            "graphile_console_last_stale_worker_sweep_timestamp_seconds",
            "When the last stale-worker sweep run through the console (web or CLI) finished, "
            "from its audit log, as a Unix timestamp. Sweeps run by the workers themselves are "
            "not recorded there.",
            snapshot.last_sweep_at.timestamp(),
        )


def cron_families(alias: str) -> Iterator[Metric]:
    """graphile_worker_cron_missed, one series per item of GRAPHILE_WORKER_CRONTAB (the Crons
    page's rule); nothing without a crontab, since a schedule is needed to miss it."""
    if not settings.GRAPHILE_WORKER_CRONTAB.strip():
        return
    try:
        report = crons.cron_report(alias, with_queued=False)  # the page's counts: not needed
    except DatabaseError as exc:
        logger.warning("/metrics could not read the cron items: %s", exc)
        return
    missed = GaugeMetricFamily(
        "graphile_worker_cron_missed",
        "1 when the cron item's latest due time (at least CRON_MISSED_TOLERANCE_SECONDS old) "
        "passed without an execution recorded in _private_known_crontabs, else 0. One series "
        "per identifier of GRAPHILE_WORKER_CRONTAB; 0 for an item no worker has loaded yet.",
        labels=["identifier"],
    )
    for row in report.rows:
        if row.item is not None:
            missed.add_metric([row.identifier], 1 if row.missed else 0)
    yield missed


class WorkerQueueCollector:
    """Reads the worker schema when scraped. Register it in a registry built for one scrape."""

    def __init__(self, alias: str | None = None, threshold: timedelta | None = None) -> None:
        # The replica when it is healthy (worker_admin/replica.py): a scrape is a read.
        self.alias = alias or read_alias()
        self.threshold = threshold or stale_worker_threshold()

    def describe(self) -> list[Metric]:
        # Registering must not read the database; the registry then skips name checks.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        snapshot = read_snapshot(self.alias, self.threshold)
        if snapshot.problem is None:
            yield from queue_families(snapshot)
            yield from cron_families(self.alias)
        yield from console_families(snapshot, self.threshold)
        yield _gauge(
            "graphile_console_scrape_success",
            "1 when this scrape read the worker schema; 0 when the database could not be read "
            "or the console cannot show the truth (no schema, an unsupported version, a role "
            "that cannot read the jobs): the queue families are then left out, not zero.",
            1 if snapshot.problem is None else 0,
        )
        yield _gauge(
            "graphile_console_scrape_duration_seconds",
            "How long this scrape took to read the worker schema and the audit log.",
            time.perf_counter() - started,
        )


class EveryDatabaseCollector:
    """With several worker databases: each one's families, every sample labelled `database`,
    one family per name (a family may appear only once in an exposition)."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for database in databases.every():
            with databases.using(database.name):
                for family in WorkerQueueCollector().collect():
                    merged = families.setdefault(
                        family.name, Metric(family.name, family.documentation, family.type)
                    )
                    merged.samples.extend(
                        sample._replace(labels={**sample.labels, "database": database.name})
                        for sample in family.samples
                    )
        yield from families.values()


def scrape_registry() -> CollectorRegistry:
    """A registry for one scrape: the queue collector plus the console's own timings."""
    from worker_admin.instrumentation import register_timings

    registry = CollectorRegistry(auto_describe=False)
    registry.register(EveryDatabaseCollector() if databases.several() else WorkerQueueCollector())
    register_timings(registry)
    return registry
