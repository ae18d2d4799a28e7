"""History for one task, one queue or one worker, read back as the overview's buckets.

Only counts rounds carry these (HISTORY_COUNTS_INTERVAL_SECONDS), and only for the largest
tasks and queues (HISTORY_TOP_GROUPS) and the most recently heard-from workers
(HISTORY_HEARTBEAT_WORKERS). A bucket says None, drawn as a gap, wherever the answer is not
known: nothing recorded then, or the task was not among the largest. A task missing from a
round that recorded every task with jobs had none, and counts as zeros.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections

from worker_admin.history.models import HistorySnapshot, history_key
from worker_admin.history.series import STATES, Range

CONSOLE = "default"
KINDS = {"task": ("tasks", "all_tasks"), "queue": ("queues", "all_queues")}


@dataclass(frozen=True)
class GroupBucket:
    start: datetime
    counts: dict | None  # per state, or None (a gap)
    wait: float | None  # seconds the group's oldest ready job had waited (the bucket's most)


@dataclass(frozen=True)
class GroupHistory:
    range: Range
    buckets: list[GroupBucket]

    @property
    def recorded(self) -> bool:
        return any(b.counts is not None for b in self.buckets)


def _bucket_keys(range_: Range, end: datetime) -> tuple[int, int, float]:
    width = range_.bucket.total_seconds()
    last = int(end.timestamp() // width)
    return last - int(range_.span.total_seconds() // width) + 1, last, width


def read_group(kind: str, name: str, range_: Range, schema: str | None = None) -> GroupHistory:
    """One task's (kind "task") or queue's ("queue") jobs by state over `range_`."""
    groups_key, all_key = KINDS[kind]
    schema = schema or history_key()
    end = _now()
    first, last, width = _bucket_keys(range_, end)
    averages = ", ".join(
        f"'{state}', round(avg(coalesce((g->>'{state}')::numeric, 0)))" for state in STATES
    )
    table = HistorySnapshot._meta.db_table
    with connections[CONSOLE].cursor() as cursor:
        # Per round: the group's entry, or zeros when the round recorded every group with jobs
        # (g = '{}'), or nothing at all (the round is left out: a gap unless another fills it).
        cursor.execute(
            f"""
            WITH rounds AS (
                SELECT taken_at,
                       CASE WHEN group_states -> %(groups)s ? %(name)s
                            THEN group_states -> %(groups)s -> %(name)s
                            WHEN (group_states ->> %(all)s)::boolean THEN '{{}}'::jsonb
                       END AS g
                  FROM {table}
                 WHERE schema = %(schema)s AND group_states IS NOT NULL
                   AND taken_at >= to_timestamp(%(first)s * %(w)s)
                   AND taken_at < to_timestamp((%(last)s + 1) * %(w)s)
            )
            SELECT floor(extract(epoch FROM taken_at) / %(w)s)::bigint,
                   jsonb_build_object({averages}), max((g->>'wait')::float), max(taken_at)
              FROM rounds WHERE g IS NOT NULL
             GROUP BY 1 ORDER BY 1
            """,
            {
                "groups": groups_key,
                "all": all_key,
                "name": name,
                "schema": schema,
                "first": first,
                "last": last,
                "w": width,
            },
        )
        rows = {row[0]: row for row in cursor.fetchall()}
    buckets, carried = [], None
    for key in range(first, last + 1):
        start = datetime.fromtimestamp(key * width, tz=end.tzinfo)
        row = rows.get(key)
        if row is not None:
            counts = json.loads(row[1]) if isinstance(row[1], str) else row[1]
            carried = (counts, row[3])
            buckets.append(GroupBucket(start, counts, row[2]))
        elif carried is not None and start - carried[1] <= _carry_limit():
            # Counts rounds are a minute apart: a one-minute bucket between two of them
            # shows the last counts rather than a gap (as the overview's backlog does).
            buckets.append(GroupBucket(start, carried[0], None))
        else:
            buckets.append(GroupBucket(start, None, None))
    return GroupHistory(range_, buckets)


@dataclass(frozen=True)
class HeartbeatHistory:
    range: Range
    times: list[datetime]
    ages: list[float | None]  # the bucket's largest heartbeat age in seconds, None: a gap
    registered: list[bool | None]  # False: recorded, and the worker was not registered

    @property
    def recorded(self) -> bool:
        return any(r is not None for r in self.registered)


def read_heartbeats(worker_id: str, range_: Range, schema: str | None = None) -> HeartbeatHistory:
    """One worker's recorded heartbeat ages over `range_`. A round that recorded every
    registered worker and not this one says it was not registered then; a round that left
    workers out (past HISTORY_HEARTBEAT_WORKERS) says nothing about it."""
    schema = schema or history_key()
    end = _now()
    first, last, width = _bucket_keys(range_, end)
    table = HistorySnapshot._meta.db_table
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute(
            f"""
            SELECT floor(extract(epoch FROM taken_at) / %(w)s)::bigint,
                   max((heartbeats ->> %(id)s)::float),
                   bool_or(heartbeats ? %(id)s),
                   bool_or(NOT heartbeats ? %(id)s
                           AND (SELECT count(*) FROM jsonb_object_keys(heartbeats))
                               >= coalesce(registered_workers, 0))
              FROM {table}
             WHERE schema = %(schema)s AND heartbeats IS NOT NULL
               AND taken_at >= to_timestamp(%(first)s * %(w)s)
               AND taken_at < to_timestamp((%(last)s + 1) * %(w)s)
             GROUP BY 1
            """,
            {"id": worker_id, "schema": schema, "first": first, "last": last, "w": width},
        )
        rows = {row[0]: row for row in cursor.fetchall()}
    times, ages, registered = [], [], []
    for key in range(first, last + 1):
        times.append(datetime.fromtimestamp(key * width, tz=end.tzinfo))
        row = rows.get(key)
        ages.append(row[1] if row else None)
        if row is None or not (row[2] or row[3]):
            registered.append(None)
        else:
            registered.append(bool(row[2]))
    return HeartbeatHistory(range_, times, ages, registered)


def _carry_limit() -> timedelta:
    return timedelta(seconds=2 * settings.HISTORY_COUNTS_INTERVAL_SECONDS)


def _now() -> datetime:
    with connections[CONSOLE].cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]
