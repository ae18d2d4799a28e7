"""Retention: recent history at full resolution, older history folded into coarser rows.

Snapshots older than HISTORY_KEEP_RAW_HOURS become one row per minute, rows older than
HISTORY_KEEP_MINUTES_DAYS one row per hour, and rows older than HISTORY_KEEP_HOURS_DAYS go.
A folded row sums the deltas it replaces (unknown ones stay out of both the sums and
`interval_seconds`, so a rate read from it stays right), keeps the last counts, the largest
wait and the largest number of old locks. With the defaults the table holds at most
~8,640 + 10,080 + 2,000 rows per schema.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction

from worker_admin.history.models import HOUR, MINUTE, HistorySnapshot

CONSOLE = "default"


def _last(column: str) -> str:
    return f"(array_agg({column} ORDER BY taken_at DESC) FILTER (WHERE {column} IS NOT NULL))[1]"


# The folded row's columns, computed from the rows of one bucket.
FOLDED = {
    "taken_at": "max(taken_at)",
    "interval_seconds": "sum(interval_seconds) FILTER (WHERE added IS NOT NULL)",
    "added": "sum(added)",
    "deleted": "sum(deleted)",
    "updated": "sum(updated)",
    "failed": "sum(failed)",
    "failed_interval_seconds": "sum(failed_interval_seconds) FILTER (WHERE failed IS NOT NULL)",
    "failed_capped": "bool_or(failed_capped)",
    "stat_inserted": _last("stat_inserted"),
    "stat_deleted": _last("stat_deleted"),
    "stat_updated": _last("stat_updated"),
    "stats_reset": _last("stats_reset"),
    "counts": _last("counts"),
    "counts_exact": _last("counts_exact"),
    "by_task": _last("by_task"),
    "by_queue": _last("by_queue"),
    "group_states": _last("group_states"),
    # Heartbeats are read for a day at most (the worker page): hourly rows drop them.
    "heartbeats": f"CASE WHEN %(resolution)s < {HOUR} THEN {_last('heartbeats')} END",
    "oldest_ready_seconds": "max(oldest_ready_seconds)",
    "locks_past_four_hours": "max(locks_past_four_hours)",
    "registered_workers": _last("registered_workers"),
    "stale_workers": "max(stale_workers)",
    "duration_ms": "max(duration_ms)",
}


def apply(schema: str, now: datetime | None = None) -> dict[str, int]:
    """Fold and prune; returns how many rows each step touched (for the command's output)."""
    now = now or _now()
    raw_cutoff = now - timedelta(hours=settings.HISTORY_KEEP_RAW_HOURS)
    minute_cutoff = now - timedelta(days=settings.HISTORY_KEEP_MINUTES_DAYS)
    drop_cutoff = now - timedelta(days=settings.HISTORY_KEEP_HOURS_DAYS)
    with transaction.atomic(using=CONSOLE):
        folded_minutes = fold(schema, MINUTE, raw_cutoff)
        folded_hours = fold(schema, HOUR, minute_cutoff)
        dropped, _ = HistorySnapshot.objects.filter(
            schema=schema, taken_at__lt=drop_cutoff
        ).delete()
    return {
        "folded_to_minutes": folded_minutes,
        "folded_to_hours": folded_hours,
        "dropped": dropped,
    }


def fold(schema: str, resolution: int, before: datetime) -> int:
    """Replace the finer rows older than `before` with one row per `resolution` seconds.

    The cutoff is rounded down to a bucket boundary, so a bucket is folded whole, once.
    Returns the number of rows replaced.
    """
    boundary = _floor(before, resolution)
    table = HistorySnapshot._meta.db_table
    columns = ", ".join(FOLDED)
    values = ", ".join(FOLDED.values())
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute(
            f"""
            WITH finer AS (
                DELETE FROM {table}
                 WHERE schema = %(schema)s AND resolution < %(resolution)s
                   AND taken_at < %(boundary)s
             RETURNING *
            ), inserted AS (
                INSERT INTO {table} (schema, resolution, {columns})
                SELECT %(schema)s, %(resolution)s, {values}
                  FROM finer
                 GROUP BY floor(extract(epoch FROM taken_at) / %(resolution)s)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM finer), (SELECT count(*) FROM inserted)
            """,
            {"schema": schema, "resolution": resolution, "boundary": boundary},
        )
        replaced, _ = cursor.fetchone()
    return replaced


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


def _now() -> datetime:
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]
