"""Snapshots read back as evenly spaced buckets, for the charts and their tables.

A bucket holds the snapshots taken in it. Throughput is a rate: the deltas summed over the
bucket, divided by the seconds they cover, per minute (so a bucket half recorded still says the
right rate). A bucket with no snapshot, or only unknown deltas, is None: the chart leaves a gap.
Counts are taken less often than the deltas; a bucket shows the average of the counts taken in
it, and a bucket without any reuses the last ones if they are recent enough (else a gap too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections

from worker_admin.history.models import HistorySnapshot, history_key

CONSOLE = "default"
STATES = ("ready", "scheduled", "locked", "failed")


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    span: timedelta
    bucket: timedelta


RANGES = {
    r.key: r
    for r in (
        Range("1h", "1 hour", timedelta(hours=1), timedelta(minutes=1)),
        Range("24h", "24 hours", timedelta(hours=24), timedelta(minutes=15)),
        Range("7d", "7 days", timedelta(days=7), timedelta(hours=2)),
    )
}
DEFAULT_RANGE = "1h"


def parse_range(value: str | None) -> Range:
    """The range a query string asks for; anything else (or nothing) is the default."""
    return RANGES.get(value or "", RANGES[DEFAULT_RANGE])


@dataclass(frozen=True)
class Bucket:
    start: datetime
    added: float | None  # per minute
    completed: float | None  # per minute (rows deleted: completed or removed)
    failed: float | None  # per minute
    counts: dict | None  # per state, or None
    counts_exact: bool | None
    oldest_ready_seconds: float | None


@dataclass(frozen=True)
class History:
    range: Range
    start: datetime
    end: datetime
    buckets: list[Bucket]

    @property
    def recorded(self) -> bool:
        return any(
            b.added is not None or b.counts is not None or b.oldest_ready_seconds is not None
            for b in self.buckets
        )


def read(schema: str | None = None, range_: Range | None = None, end: datetime | None = None):
    """The buckets of `range_` ending at `end` (the database's now by default)."""
    schema = schema or history_key()
    range_ = range_ or RANGES[DEFAULT_RANGE]
    end = end or _now()
    width = range_.bucket.total_seconds()
    # Buckets are aligned to whole multiples of their width, so a refresh does not shift them.
    last = int(end.timestamp() // width)
    first = last - int(range_.span.total_seconds() // width) + 1
    rows = {row[0]: row for row in _rows(schema, first, last, width)}
    buckets, carried = [], None
    for key in range(first, last + 1):
        row = rows.get(key)
        start = datetime.fromtimestamp(key * width, tz=end.tzinfo)
        if row is None:
            buckets.append(Bucket(start, None, None, None, None, None, None))
            carried = None  # nothing recorded here: later buckets may not borrow across it
            continue
        _, added, deleted, failed, span, failed_span, counts, exact, wait, counted_at = row
        if isinstance(counts, str):  # Django loads jsonb as text on its raw cursors
            counts = json.loads(counts)
        if counts is not None:
            carried = (counts, exact, counted_at)
        elif carried is not None and start - carried[2] <= _carry_limit():
            counts, exact = carried[0], carried[1]
        buckets.append(
            Bucket(
                start,
                _per_minute(added, span),
                _per_minute(deleted, span),
                _per_minute(failed, failed_span),
                counts,
                exact,
                wait,
            )
        )
    return History(range_, datetime.fromtimestamp(first * width, tz=end.tzinfo), end, buckets)


def _carry_limit() -> timedelta:
    return timedelta(seconds=2 * settings.HISTORY_COUNTS_INTERVAL_SECONDS)


def _per_minute(total, seconds) -> float | None:
    if total is None or not seconds:
        return None
    return float(total) * 60.0 / float(seconds)


def _rows(schema: str, first: int, last: int, width: float) -> list[tuple]:
    table = HistorySnapshot._meta.db_table
    # The bucket's average backlog per state (cheaper than picking its last counts: no sort).
    averages = ", ".join(
        f"'{state}', round(avg((counts->>'{state}')::numeric))" for state in STATES
    )
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute(
            f"""
            SELECT floor(extract(epoch FROM taken_at) / %(w)s)::bigint AS k,
                   sum(added), sum(deleted), sum(failed),
                   sum(interval_seconds) FILTER (WHERE added IS NOT NULL),
                   sum(failed_interval_seconds) FILTER (WHERE failed IS NOT NULL),
                   CASE WHEN count(counts) > 0 THEN jsonb_build_object({averages}) END,
                   bool_and(counts_exact) FILTER (WHERE counts IS NOT NULL),
                   max(oldest_ready_seconds),
                   max(taken_at) FILTER (WHERE counts IS NOT NULL)
              FROM {table}
             WHERE schema = %(schema)s
               AND taken_at >= to_timestamp(%(first)s * %(w)s)
               AND taken_at < to_timestamp((%(last)s + 1) * %(w)s)
             GROUP BY 1 ORDER BY 1
            """,
            {"schema": schema, "first": first, "last": last, "w": width},
        )
        return cursor.fetchall()


def sparklines(kind: str, schema: str | None = None, hours: int = 24) -> dict[str, list]:
    """Per task (kind="task") or queue ("queue"): its job count at the end of each hour over
    `hours`, oldest first, None where nothing was recorded. Only the largest tasks and queues
    are recorded (HISTORY_TOP_GROUPS per snapshot), so others have no line."""
    column = {"task": "by_task", "queue": "by_queue"}[kind]
    schema = schema or history_key()
    end = _now()
    width = 3600.0
    last = int(end.timestamp() // width)
    first = last - hours + 1
    table = HistorySnapshot._meta.db_table
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute(
            f"""
            WITH hourly AS (  -- the last recorded counts of each hour: 24 rows to unnest
                SELECT floor(extract(epoch FROM taken_at) / %(w)s)::bigint AS k,
                       (array_agg({column} ORDER BY taken_at DESC))[1] AS groups
                  FROM {table}
                 WHERE schema = %(schema)s AND {column} IS NOT NULL
                   AND taken_at >= to_timestamp(%(first)s * %(w)s)
                 GROUP BY 1
            )
            SELECT h.k, g.key, g.value::numeric::float
              FROM hourly h, jsonb_each_text(h.groups) g
            """,
            {"schema": schema, "first": first, "w": width},
        )
        rows = cursor.fetchall()
    lines: dict[str, list] = {}
    for key, name, value in rows:
        if first <= key <= last:
            lines.setdefault(name, [None] * hours)[key - first] = value
    return lines


def _now() -> datetime:
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]
