"""The reads one snapshot makes of the worker schema, each cheap at any table size.

- The table statistics PostgreSQL keeps for `_private_jobs` (pg_stat_user_tables): cumulative
  rows inserted, deleted and updated. Reading them touches no table at all. A worker's backend
  reports its counts when its transaction ends or within seconds when idle, so a snapshot may
  see a burst a few seconds late; the next one sees the rest (nothing is lost or counted twice).
  They are read on the primary even when everything else is read on a replica: a hot standby's
  statistics count what its own sessions do, and WAL replay is not counted, so there they stay
  at 0 however many jobs the workers add and complete.
- The oldest ready job (a few index probes, worker_admin.stats.oldest_ready_at).
- Registered and stale workers (the Rust extension's small `_private_workers` table).
- Jobs that failed an attempt since the previous snapshot, bounded (see `failures_since`).
- Less often (HISTORY_COUNTS_INTERVAL_SECONDS): the overview's counts per state, task and queue
  (exact on a small table, estimated from a sample on a large one, marked as such) and the
  locks held past the 4-hour mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import Q
from django.db.models.functions import Now

from worker_admin import indexes
from worker_admin.fleet import FOUR_HOURS
from worker_admin.installer import quote_schema
from worker_admin.models import Job, Worker
from worker_admin.stats import (
    QueueStats,
    database_now,
    is_large,
    oldest_ready_at,
    queue_stats,
)

# At most this many failed jobs are counted per snapshot: past it the row says "at least".
FAILURE_COUNT_LIMIT = 10_000
# The failure count may take at most this long; past it the snapshot records "unknown".
FAILURE_COUNT_TIMEOUT_MS = 200


@dataclass(frozen=True)
class TableStats:
    inserted: int
    deleted: int
    updated: int
    reset_at: datetime | None  # when the database's statistics were last reset


def table_stats(alias: str, schema: str) -> TableStats | None:
    """The cumulative counters of `_private_jobs`; None when PostgreSQL keeps none for it.

    `alias` must be the primary's: on a hot standby these counters ignore replayed changes."""
    with connections[alias].cursor() as cursor:
        # Inside a transaction PostgreSQL serves statistics from a snapshot taken at first use;
        # clearing it makes a long-lived recorder's transaction read fresh values.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            """
            SELECT s.n_tup_ins, s.n_tup_del, s.n_tup_upd,
                   (SELECT d.stats_reset FROM pg_stat_database d
                     WHERE d.datname = current_database())
              FROM pg_stat_user_tables s
             WHERE s.schemaname = %s AND s.relname = '_private_jobs'
            """,
            [schema],
        )
        row = cursor.fetchone()
    return TableStats(*row) if row else None


@dataclass(frozen=True)
class Counters:
    added: int | None
    deleted: int | None
    updated: int | None


UNKNOWN = Counters(None, None, None)


def deltas(previous, current: TableStats | None, *, gap: bool) -> Counters:
    """What changed between two readings; unknown (never negative) across a reset or a gap.

    `previous` is the last snapshot (or None). A counter that went down, or a changed
    stats_reset, means PostgreSQL's statistics were reset (pg_stat_reset, a crash, a restore):
    the interval's counts are lost, so they are recorded as unknown rather than guessed.
    """
    if current is None or previous is None or previous.stat_inserted is None or gap:
        return UNKNOWN
    if previous.stats_reset != current.reset_at:
        return UNKNOWN
    pairs = (
        (previous.stat_inserted, current.inserted),
        (previous.stat_deleted, current.deleted),
        (previous.stat_updated, current.updated),
    )
    if any(after < before for before, after in pairs):
        return UNKNOWN
    return Counters(*(after - before for before, after in pairs))


def failures_every_snapshot(alias: str, schema: str) -> bool:
    """Whether counting recent failures is cheap enough for every snapshot: through the opt-in
    console_jobs_failing index (it holds only jobs with a failed attempt). Without it the count
    reads the table, so it is taken on counts rounds only, and not at all on a large table."""
    return indexes.present(alias, schema, "console_jobs_failing")


def failures_since(alias: str, schema: str, since: datetime | None) -> tuple[int | None, bool]:
    """Jobs that failed an attempt after `since` and wait (or gave up): (count, capped).

    A failed attempt leaves the job unlocked with last_error set and updated_at at the time
    of the failure. The count stops at FAILURE_COUNT_LIMIT ("at least") and never takes longer
    than FAILURE_COUNT_TIMEOUT_MS (then it is unknown). A job that failed twice since `since`
    counts once.
    """
    if since is None:
        return None, False
    jobs = f"{quote_schema(schema)}._private_jobs"
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        usual = cursor.fetchone()[0]
    try:
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            # SET LOCAL outlives a released savepoint (it lasts to the end of the transaction
            # that encloses the recorder's), so the usual timeout is put back below.
            cursor.execute(f"SET LOCAL statement_timeout = {FAILURE_COUNT_TIMEOUT_MS}")
            cursor.execute(
                f"""
                SELECT count(*) FROM (
                    SELECT 1 FROM {jobs}
                     WHERE attempts > 0 AND locked_at IS NULL AND last_error IS NOT NULL
                       AND updated_at > %s
                     LIMIT %s) AS recent
                """,
                [since, FAILURE_COUNT_LIMIT + 1],
            )
            count = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [usual])
    except DatabaseError:  # the timeout: say "unknown" rather than slow the recorder down
        return None, False
    return min(count, FAILURE_COUNT_LIMIT), count > FAILURE_COUNT_LIMIT


def workers(alias: str, has_workers_table: bool) -> tuple[int | None, int | None]:
    """(registered, stale) workers; (None, None) without the Rust extension's workers table."""
    if not has_workers_table:
        return None, None
    threshold = timedelta(seconds=settings.STALE_WORKER_THRESHOLD_SECONDS)  # /metrics' rule
    rows = Worker.objects.using(alias)
    return rows.count(), rows.stale(threshold).count()


def locks_past_four_hours(alias: str, schema: str, *, counts_due: bool) -> int | None:
    """Jobs locked for 4 hours or more (Graphile Worker's lock timeout), when that is cheap:
    through the opt-in console_jobs_locked index, or on a counts round of a small table."""
    indexed = indexes.present(alias, schema, "console_jobs_locked")
    if not indexed and (not counts_due or is_large(alias)):
        return None
    cutoff = Now() - FOUR_HOURS
    return (
        Job.objects.using(alias).filter(Q(locked_by__isnull=False), locked_at__lte=cutoff).count()
    )


def oldest_ready_seconds(alias: str) -> float | None:
    oldest = oldest_ready_at(alias)
    if oldest is None:
        return None
    return max(0.0, (database_now(alias) - oldest).total_seconds())


@dataclass(frozen=True)
class Grouped:
    stats: QueueStats
    by_task: dict  # {identifier: jobs}, the `top` largest
    by_queue: dict  # {queue name: jobs}, the `top` largest
    group_states: dict  # the same tasks and queues by state (models.HistorySnapshot)


def grouped_counts(alias: str, top: int) -> Grouped:
    """The overview's counts, and the `top` largest tasks and queues by jobs (bounded rows),
    each also by state with its oldest ready job's wait (None where not known: a sample)."""
    stats = queue_stats(alias)

    def largest(groups) -> list:
        named = [g for g in groups if g.name is not None]
        return sorted(named, key=lambda g: (-g.counts.total, g.name))

    def all_there(groups) -> bool:  # every one with jobs is among the `top`: absent means none
        return sum(g.counts.total > 0 for g in groups) <= top

    def by_state(group) -> dict:
        counts = {state: getattr(group.counts, state) for state in GROUP_STATES}
        wait = None
        if group.oldest_ready_at is not None:
            wait = round(max(0.0, (stats.now - group.oldest_ready_at).total_seconds()), 1)
        return counts | {"wait": wait}

    tasks, queues = largest(stats.by_task), largest(stats.by_queue)
    return Grouped(
        stats=stats,
        by_task={g.name: g.counts.total for g in tasks[:top]},
        by_queue={g.name: g.counts.total for g in queues[:top]},
        group_states={
            "tasks": {g.name: by_state(g) for g in tasks[:top]},
            "queues": {g.name: by_state(g) for g in queues[:top]},
            "all_tasks": all_there(tasks),
            "all_queues": all_there(queues),
        },
    )


GROUP_STATES = ("ready", "scheduled", "locked", "failed")


def heartbeats(alias: str, has_workers_table: bool, limit: int) -> dict | None:
    """{worker id: seconds since its last heartbeat} for the `limit` most recent heartbeats
    (an index scan of `_private_workers`); None without that table."""
    if not has_workers_table:
        return None
    now = database_now(alias)
    rows = (
        Worker.objects.using(alias)
        .order_by("-last_heartbeat_at", "id")
        .values_list("id", "last_heartbeat_at")[:limit]
    )
    return {worker_id: round((now - beat).total_seconds(), 1) for worker_id, beat in rows}
