"""One row per snapshot of the queue, in the console's own schema."""

from __future__ import annotations

from django.conf import settings
from django.db import models

RAW, MINUTE, HOUR = 0, 60, 3600  # resolution: 0 = as recorded; else the bucket folded into


class HistorySnapshot(models.Model):
    """The queue at `taken_at` (the database's clock), and what changed since the previous row.

    The deltas (added, deleted, updated, failed) cover `interval_seconds` before `taken_at`;
    None means unknown: the first snapshot, a statistics reset, or a gap in recording. A chart
    shows unknown as a gap, never as zero. The counts are taken less often than the deltas
    (HISTORY_COUNTS_INTERVAL_SECONDS), so `counts` is None on most rows.
    """

    schema = models.CharField(max_length=63)
    taken_at = models.DateTimeField()
    resolution = models.PositiveIntegerField(default=RAW)
    interval_seconds = models.FloatField(null=True)
    added = models.BigIntegerField(null=True)
    deleted = models.BigIntegerField(null=True)
    updated = models.BigIntegerField(null=True)
    failed = models.BigIntegerField(null=True)
    # The seconds `failed` covers: this row's interval when the count is cheap enough to take
    # every time (an index), else the time since the previous counts round.
    failed_interval_seconds = models.FloatField(null=True)
    # True when `failed` stopped at the recorder's bound: "at least this many".
    failed_capped = models.BooleanField(default=False)
    # The cumulative counters as read, to compute the next row's deltas.
    stat_inserted = models.BigIntegerField(null=True)
    stat_deleted = models.BigIntegerField(null=True)
    stat_updated = models.BigIntegerField(null=True)
    stats_reset = models.DateTimeField(null=True)
    # {"ready": n, "scheduled": n, "locked": n, "failed": n, "retrying": n} or None.
    counts = models.JSONField(null=True)
    counts_exact = models.BooleanField(null=True)
    by_task = models.JSONField(null=True)  # {task identifier: jobs}, the largest N only
    by_queue = models.JSONField(null=True)  # {queue name: jobs}, the largest N only
    # The same largest tasks and queues by state, for their own pages' charts:
    # {"tasks": {identifier: {"ready": n, "scheduled": n, "locked": n, "failed": n,
    #  "wait": seconds or None}}, "queues": {...}, "all_tasks": bool, "all_queues": bool};
    # all_* says every task (queue) with jobs is there, so one missing had none.
    group_states = models.JSONField(null=True)
    # Registered workers' heartbeat ages in seconds at `taken_at`, {worker id: age}, the
    # HISTORY_HEARTBEAT_WORKERS most recent heartbeats (registered_workers says if some were
    # left out); taken on counts rounds, None on the others and without `_private_workers`.
    heartbeats = models.JSONField(null=True)
    oldest_ready_seconds = models.FloatField(null=True)
    locks_past_four_hours = models.IntegerField(null=True)
    registered_workers = models.IntegerField(null=True)
    stale_workers = models.IntegerField(null=True)
    duration_ms = models.FloatField(null=True)  # the database time this snapshot took

    class Meta:
        app_label = "worker_admin"
        indexes = [
            models.Index(fields=["schema", "taken_at"], name="wa_history_taken"),
        ]
        ordering = ["taken_at"]

    def __str__(self) -> str:
        return f"{self.schema} at {self.taken_at:%Y-%m-%d %H:%M:%S}"


def history_key() -> str:
    """What the snapshots of the current worker database are filed under (their `schema`
    column): the schema name for the main database, as always; "<schema>@<name>" for another
    one of GRAPHILE_WORKER_DATABASES, so each database has its own history and recorder lock."""
    from worker_admin import databases

    schema, database = settings.GRAPHILE_WORKER_SCHEMA, databases.current()
    if database.is_main:
        return schema
    return f"{schema[: 62 - len(database.name)]}@{database.name}"
