"""Taking a snapshot: once per interval, by whichever process gets there first.

Several console processes (and the `record-history` command) may all decide a snapshot is due
at the same moment. Each tries a transaction-level advisory lock on the console database,
without waiting: the one that gets it checks, under the lock, that no snapshot was taken less
than an interval ago, records one, and commits; the others go back to what they were doing.
So N processes record one snapshot per interval, never N.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction

from worker_admin import databases
from worker_admin.history import reading, retention
from worker_admin.history.models import RAW, HistorySnapshot, history_key
from worker_admin.replica import read_alias
from worker_admin.schema import capabilities
from worker_admin.stats import is_large

CONSOLE = "default"  # the console's own tables, and the advisory lock, live here
LOCK_NAMESPACE = "graphile_console.history"
# A snapshot is due when the last one is at least this share of an interval old: a recorder
# sleeping exactly one interval must not skip every other round because of clock jitter.
DUE_SHARE = 0.9
# Retention runs at most this often per process, under the same lock as a snapshot.
RETENTION_EVERY = timedelta(minutes=10)
_last_retention: dict[str, float] = {}


@dataclass(frozen=True)
class Outcome:
    snapshot: HistorySnapshot | None
    reason: str  # "recorded", "not due", "locked" (another process is recording), "unusable"


def gap_limit(interval: float) -> timedelta:
    """Longer than this since the previous snapshot, the recorder was stopped: a gap."""
    return timedelta(seconds=5 * interval + 5)


def record_if_due(alias: str | None = None, *, interval: float | None = None) -> Outcome:
    """Record one snapshot unless one was taken less than `interval` seconds ago, or another
    process holds the recorder's lock right now (then return at once: never wait)."""
    # The table statistics come from the primary, always (reading.table_stats says why).
    stats_alias = alias or databases.current().alias
    alias = alias or read_alias()  # counts are reads: the replica when it is healthy
    interval = float(interval or settings.HISTORY_INTERVAL_SECONDS)
    schema = settings.GRAPHILE_WORKER_SCHEMA
    key = history_key()  # per worker database
    caps = capabilities(alias)
    if not caps.usable:
        return Outcome(None, "unusable")
    with transaction.atomic(using=CONSOLE):
        if not _try_lock(key):
            return Outcome(None, "locked")
        now = _clock()
        previous = HistorySnapshot.objects.filter(schema=key).order_by("-taken_at").first()
        if previous is not None and now - previous.taken_at < timedelta(
            seconds=interval * DUE_SHARE
        ):
            return Outcome(None, "not due")
        snapshot = take(
            alias,
            schema,
            now,
            previous,
            interval,
            caps.has_workers_table,
            key=key,
            stats_alias=stats_alias,
        )
        snapshot.save(using=CONSOLE)
        _retention_if_due(key)
    return Outcome(snapshot, "recorded")


def _try_lock(schema: str) -> bool:
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(hashtext(%s), hashtext(%s))",
            [LOCK_NAMESPACE, schema],
        )
        return bool(cursor.fetchone()[0])


def _clock() -> datetime:
    # clock_timestamp, not now(): now() is the transaction's start, which a waiting caller
    # may have begun long ago.
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def take(
    alias: str,
    schema: str,
    now: datetime,
    previous: HistorySnapshot | None,
    interval: float,
    has_workers_table: bool,
    *,
    key: str | None = None,
    stats_alias: str | None = None,
) -> HistorySnapshot:
    """Read the worker schema and build (not save) the snapshot at `now`, filed under `key`
    (history_key(): the schema, or schema@database for another worker database). Everything
    is read on `alias` but the table statistics, read on `stats_alias` (the primary's alias
    when `alias` is a replica's: a hot standby does not count the changes it replays)."""
    key = key or schema
    started = time.perf_counter()
    elapsed = None if previous is None else now - previous.taken_at
    gap = elapsed is not None and elapsed > gap_limit(interval)
    stats = reading.table_stats(stats_alias or alias, schema)
    counters = reading.deltas(previous, stats, gap=gap)
    counts_due, last_counts_at = _counts_due(key, now)
    since = _failure_window(alias, schema, now, previous, gap, counts_due, last_counts_at)
    failed, capped = reading.failures_since(alias, schema, since)
    registered, stale = reading.workers(alias, has_workers_table)
    snapshot = HistorySnapshot(
        schema=key,
        taken_at=now,
        resolution=RAW,
        interval_seconds=elapsed.total_seconds() if elapsed is not None else None,
        added=counters.added,
        deleted=counters.deleted,
        updated=counters.updated,
        failed=failed,
        failed_interval_seconds=(now - since).total_seconds() if failed is not None else None,
        failed_capped=capped,
        stat_inserted=stats.inserted if stats else None,
        stat_deleted=stats.deleted if stats else None,
        stat_updated=stats.updated if stats else None,
        stats_reset=stats.reset_at if stats else None,
        oldest_ready_seconds=reading.oldest_ready_seconds(alias),
        locks_past_four_hours=reading.locks_past_four_hours(alias, schema, counts_due=counts_due),
        registered_workers=registered,
        stale_workers=stale,
    )
    if counts_due:
        grouped = reading.grouped_counts(alias, settings.HISTORY_TOP_GROUPS)
        names = ("ready", "scheduled", "locked", "failed", "retrying")
        snapshot.counts = {name: getattr(grouped.stats.counts, name) for name in names}
        snapshot.counts_exact = grouped.stats.exact
        snapshot.by_task = grouped.by_task
        snapshot.by_queue = grouped.by_queue
        snapshot.group_states = grouped.group_states
        # With the counts, not every snapshot: a minute's resolution is enough for a heartbeat
        # every 30 s, and 500 workers' ages every 10 s would be ~20 KB a row, 8,640 rows a day.
        snapshot.heartbeats = reading.heartbeats(
            alias, has_workers_table, settings.HISTORY_HEARTBEAT_WORKERS
        )
    snapshot.duration_ms = (time.perf_counter() - started) * 1000
    return snapshot


def _counts_due(schema: str, now: datetime) -> tuple[bool, datetime | None]:
    """Whether this snapshot takes the counts, and when the last one that did was taken."""
    last = (
        HistorySnapshot.objects.filter(schema=schema, counts__isnull=False)
        .order_by("-taken_at")
        .values_list("taken_at", flat=True)
        .first()
    )
    every = timedelta(seconds=settings.HISTORY_COUNTS_INTERVAL_SECONDS * DUE_SHARE)
    return last is None or now - last >= every, last


def _failure_window(alias, schema, now, previous, gap, counts_due, last_counts_at):
    """Since when this snapshot counts failed jobs; None when it counts none (unknown).

    With the opt-in index: since the previous snapshot, every time. Without it, on a small
    table: since the previous counts round, on counts rounds only (the count reads the table).
    On a large table without the index: never.
    """
    if reading.failures_every_snapshot(alias, schema):
        return None if previous is None or gap else previous.taken_at
    if not counts_due or last_counts_at is None or is_large(alias):
        return None
    limit = timedelta(seconds=3 * settings.HISTORY_COUNTS_INTERVAL_SECONDS) + gap_limit(0)
    return last_counts_at if now - last_counts_at <= limit else None


def _retention_if_due(schema: str) -> None:
    now = time.monotonic()
    last = _last_retention.get(schema)
    if last is not None and now - last < RETENTION_EVERY.total_seconds():
        return
    _last_retention[schema] = now
    retention.apply(schema)
