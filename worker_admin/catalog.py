"""Queues and tasks: every queue row and every task row with its jobs counted by state.

One grouped query per page, from the queue (or task) table through a LEFT JOIN to the jobs, so
queues and tasks without jobs are listed too. The state predicates come from
worker_admin.states; `_through()` only re-anchors them on the jobs relation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Min, Q

from worker_admin import indexes
from worker_admin.estimates import Estimate
from worker_admin.models import Job, JobQueue, Task
from worker_admin.states import RETRYING, STATE_PREDICATES, JobState
from worker_admin.stats import SampledGroups, StateCounts, database_now, sampled_groups

# The schema functions treat a lock this old as abandoned, and Node pools free such locks at
# their next reset (GRAPHILE_WORKER.md §3 and §4).
STALE_LOCK_AGE = timedelta(hours=4)


def _through(relation: str, predicate: Q) -> Q:
    """The same predicate, for a query that reaches the jobs through `relation`."""
    children = [
        _through(relation, child)
        if isinstance(child, Q)
        else (f"{relation}__{child[0]}", _through_value(relation, child[1]))
        for child in predicate.children
    ]
    return Q(*children, _connector=predicate.connector, _negated=predicate.negated)


def _through_value(relation: str, value):
    if isinstance(value, F):
        return F(f"{relation}__{value.name}")
    if hasattr(value, "get_source_expressions"):
        value = value.copy()
        value.set_source_expressions(
            [_through_value(relation, source) for source in value.get_source_expressions()]
        )
    return value


def _job_aggregates(relation: str) -> dict:
    aggregates = {
        state.value: Count(f"{relation}__id", filter=_through(relation, predicate))
        for state, predicate in STATE_PREDICATES.items()
    }
    aggregates["retrying"] = Count(f"{relation}__id", filter=_through(relation, RETRYING))
    aggregates["oldest_ready_at"] = Min(
        f"{relation}__run_at", filter=_through(relation, STATE_PREDICATES[JobState.READY])
    )
    return aggregates


def _counts(row) -> StateCounts:
    return StateCounts(
        ready=row.ready,
        scheduled=row.scheduled,
        locked=row.locked,
        failed=row.failed,
        retrying=row.retrying,
    )


def _age(now: datetime, moment: datetime | None) -> timedelta | None:
    return now - moment if moment is not None else None


@dataclass(frozen=True)
class QueueRow:
    name: str
    counts: StateCounts
    oldest_ready_age: timedelta | None
    locked_by: str | None
    locked_at: datetime | None
    lock_age: timedelta | None
    # False on a large table without the opt-in console_jobs_locked index: the queue's running
    # jobs were not counted, so a lock cannot be called "without a job".
    locked_jobs_known: bool = True

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None

    @property
    def lock_is_old(self) -> bool:
        """Held for more than four hours: its job has most likely died with its worker."""
        return self.lock_age is not None and self.lock_age > STALE_LOCK_AGE

    @property
    def lock_without_job(self) -> bool:
        """Locked while none of its jobs is: nothing runs, yet every job behind it waits."""
        return self.is_locked and self.locked_jobs_known and self.counts.locked == 0

    @property
    def lock_is_suspect(self) -> bool:
        return self.lock_is_old or self.lock_without_job


@dataclass(frozen=True)
class QueueReport:
    now: datetime
    queues: list[QueueRow]
    truncated: bool  # more queues match than the limit; the first ones are shown
    sampled_fraction: float | None = None  # counts estimated from a sample of this share

    @property
    def approx(self) -> str:
        """ "~" before each count when the counts are estimates."""
        return "~" if self.sampled_fraction is not None else ""

    @property
    def locked(self) -> int:
        return sum(queue.is_locked for queue in self.queues)

    @property
    def suspect(self) -> int:
        return sum(queue.lock_is_suspect for queue in self.queues)


def queue_report(
    alias: str, *, name_contains: str = "", name: str | None = None, limit: int = 500
) -> QueueReport:
    """Every queue row (locked ones first, oldest lock first, then by name), counted by state.

    On a large table the counts come from the overview's random sample (one read of ~20,000
    rows instead of a grouped pass over every job), each with its 95 % interval; a queue the
    sample did not see shows an upper bound.
    """
    queues = JobQueue.objects.using(alias)
    if name_contains:
        queues = queues.filter(queue_name__contains=name_contains)
    if name is not None:
        queues = queues.filter(queue_name=name)
    order = (F("locked_at").asc(nulls_last=True), "queue_name")
    sampled = sampled_groups(alias)
    if sampled is not None:
        return _sampled_queue_report(alias, queues.order_by(*order), sampled, limit)
    rows = list(queues.annotate(**_job_aggregates("jobs")).order_by(*order)[: limit + 1])
    now = database_now(alias)
    return QueueReport(
        now=now,
        queues=[
            QueueRow(
                name=row.queue_name,
                counts=_counts(row),
                oldest_ready_age=_age(now, row.oldest_ready_at),
                locked_by=row.locked_by,
                locked_at=row.locked_at,
                lock_age=_age(now, row.locked_at),
            )
            for row in rows[:limit]
        ],
        truncated=len(rows) > limit,
    )


def _sampled_queue_report(alias: str, queues, sampled: SampledGroups, limit: int) -> QueueReport:
    rows = list(queues[: limit + 1])
    now = database_now(alias)
    locked = _locked_jobs_by_queue(alias, [row.id for row in rows[:limit] if row.locked_at])
    result = []
    for row in rows[:limit]:
        counts = sampled.of_queue(row.id)
        if locked is not None and row.locked_at is not None:
            counts = counts.replaced("locked", Estimate.exact_count(locked.get(row.id, 0)))
        result.append(
            QueueRow(
                name=row.queue_name,
                counts=counts,
                oldest_ready_age=None,
                locked_by=row.locked_by,
                locked_at=row.locked_at,
                lock_age=_age(now, row.locked_at),
                locked_jobs_known=locked is not None or row.locked_at is None,
            )
        )
    return QueueReport(
        now=now, queues=result, truncated=len(rows) > limit, sampled_fraction=sampled.fraction
    )


def _locked_jobs_by_queue(alias: str, queue_ids: list[int]) -> dict[int, int] | None:
    """Exact running jobs of these locked queues, when the opt-in locked-jobs index exists
    (a read of the few locked jobs); None without it (that count would read every job)."""
    if not queue_ids:
        return {}
    if not indexes.present(alias, settings.GRAPHILE_WORKER_SCHEMA, "console_jobs_locked"):
        return None
    return dict(
        Job.objects.using(alias)
        .filter(locked_at__isnull=False, locked_by__isnull=False, job_queue_id__in=queue_ids)
        .values("job_queue_id")
        .annotate(n=Count("id"))
        .values_list("job_queue_id", "n")
    )


@dataclass(frozen=True)
class TaskRow:
    identifier: str
    counts: StateCounts
    oldest_ready_age: timedelta | None  # how long the task's oldest ready job has waited


@dataclass(frozen=True)
class TaskReport:
    now: datetime
    tasks: list[TaskRow]
    sampled_fraction: float | None = None  # counts estimated from a sample of this share

    @property
    def approx(self) -> str:
        return "~" if self.sampled_fraction is not None else ""


def task_report(alias: str, *, identifier: str | None = None) -> TaskReport:
    """Every task row, by identifier, counted by state, with its oldest ready job's wait.

    On a large table the counts come from the overview's sample and are marked as estimates,
    and the oldest ready job per task is not shown (it would need an index per task).
    """
    tasks = Task.objects.using(alias)
    if identifier is not None:
        tasks = tasks.filter(identifier=identifier)
    sampled = sampled_groups(alias)
    if sampled is not None:
        return TaskReport(
            now=database_now(alias),
            tasks=[
                TaskRow(task.identifier, sampled.of_task(task.id), None)
                for task in tasks.order_by("identifier")
            ],
            sampled_fraction=sampled.fraction,
        )
    rows = list(tasks.annotate(**_job_aggregates("jobs")).order_by("identifier"))
    now = database_now(alias)
    return TaskReport(
        now=now,
        tasks=[
            TaskRow(row.identifier, _counts(row), _age(now, row.oldest_ready_at)) for row in rows
        ],
    )


def task_row(alias: str, identifier: str) -> tuple[TaskReport, TaskRow | None]:
    """One task as the tasks page counts it (its page); the row is None for an unknown task."""
    report = task_report(alias, identifier=identifier)
    return report, next(iter(report.tasks), None)


def queue_row(alias: str, name: str) -> tuple[QueueReport, QueueRow | None]:
    """One queue as the queues page counts it (its page); the row is None for an unknown queue."""
    report = queue_report(alias, name=name, limit=1)
    return report, next(iter(report.queues), None)
