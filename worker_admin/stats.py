"""Counts for the overview, the CLI's `stats` and (later) /metrics, from the read-only models.

One pass over the jobs table per grouping, with a FILTER per state: the predicates come from
worker_admin.states, so every face of the console counts the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connections
from django.db.models import Count, Min

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


@dataclass(frozen=True)
class QueueStats:
    now: datetime
    counts: StateCounts
    oldest_ready_at: datetime | None
    oldest_lock_at: datetime | None
    by_task: list[GroupCounts] = field(default_factory=list)
    by_queue: list[GroupCounts] = field(default_factory=list)

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


def _counts(row: dict) -> StateCounts:
    return StateCounts(
        **{name: row[name] for name in ("ready", "scheduled", "locked", "failed", "retrying")}
    )


def queue_stats(alias: str) -> QueueStats:
    jobs = Job.objects.using(alias)
    totals = jobs.aggregate(
        **_state_aggregates(),
        oldest_ready_at=Min("run_at", filter=STATE_PREDICATES[JobState.READY]),
        oldest_lock_at=Min("locked_at"),
    )
    by_task = (
        jobs.values("task__identifier")
        .annotate(
            **_state_aggregates(),
            oldest_ready_at=Min("run_at", filter=STATE_PREDICATES[JobState.READY]),
        )
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
        oldest_ready_at=totals["oldest_ready_at"],
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


def database_now(alias: str) -> datetime:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]
