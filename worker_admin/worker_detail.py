"""One worker or lock holder, read for its own page: its registration (Rust workers with the
recovery extension), its heartbeat against a threshold, and the jobs and queues it holds now
with their lock ages against the 4-hour mark (a bounded list and an exact count). Read-only:
the page links to the existing force-unlock and sweep previews."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from worker_admin.fleet import FOUR_HOURS, holder_kind
from worker_admin.models import Job, JobQueue, Worker, heartbeat_is_stale
from worker_admin.stats import database_now

JOBS_SHOWN = 100
QUEUES_SHOWN = 100
# Longer than any id a worker library makes; the page answers 404 past it, never a query.
MAX_ID_LENGTH = 1000


@dataclass(frozen=True)
class Registration:
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_age: timedelta
    stale: bool
    pid: object
    host: object


@dataclass(frozen=True)
class HeldLock:
    """A job or a queue this worker holds."""

    id: int
    name: str  # the task identifier of a job, the name of a queue
    locked_at: datetime
    age: timedelta
    attempts: str = ""

    @property
    def past_four_hours(self) -> bool:
        return self.age >= FOUR_HOURS


@dataclass(frozen=True)
class WorkerDetail:
    id: str
    kind: str
    now: datetime
    threshold: timedelta
    registration: Registration | None
    tracks_registrations: bool  # False: no _private_workers table in this schema
    jobs: list[HeldLock]
    job_count: int
    queues: list[HeldLock]
    queue_count: int

    @property
    def exists(self) -> bool:
        return self.registration is not None or self.job_count > 0 or self.queue_count > 0

    @property
    def oldest_lock_age(self) -> timedelta | None:
        ages = [lock.age for lock in (*self.jobs[:1], *self.queues[:1])]
        return max(ages) if ages else None


def worker_detail(
    alias: str, worker_id: str, threshold: timedelta, *, has_workers_table: bool
) -> WorkerDetail:
    now = database_now(alias)
    registration = None
    if has_workers_table:
        row = Worker.objects.using(alias).filter(id=worker_id).first()
        if row is not None:
            registration = _registration(row, now, threshold)
    held = Job.objects.using(alias).filter(locked_at__isnull=False, locked_by=worker_id)
    jobs = [
        HeldLock(
            job.id,
            job.task.identifier,
            job.locked_at,
            now - job.locked_at,
            f"{job.attempts}/{job.max_attempts}",
        )
        for job in held.select_related("task")
        .defer("payload")
        .order_by("locked_at", "id")[:JOBS_SHOWN]
    ]
    queue_rows = JobQueue.objects.using(alias).filter(locked_at__isnull=False, locked_by=worker_id)
    queues = [
        HeldLock(q.id, q.queue_name, q.locked_at, now - q.locked_at)
        for q in queue_rows.order_by("locked_at", "id")[:QUEUES_SHOWN]
    ]
    return WorkerDetail(
        id=worker_id,
        kind=holder_kind(worker_id),
        now=now,
        threshold=threshold,
        registration=registration,
        tracks_registrations=has_workers_table,
        jobs=jobs,
        job_count=len(jobs) if len(jobs) < JOBS_SHOWN else held.count(),
        queues=queues,
        queue_count=len(queues) if len(queues) < QUEUES_SHOWN else queue_rows.count(),
    )


def _registration(row: Worker, now: datetime, threshold: timedelta) -> Registration:
    metadata = row.metadata if isinstance(row.metadata, dict) else {}
    age = now - row.last_heartbeat_at
    return Registration(
        started_at=row.started_at,
        last_heartbeat_at=row.last_heartbeat_at,
        heartbeat_age=age,
        stale=heartbeat_is_stale(age, threshold),
        pid=metadata.get("pid"),
        host=metadata.get("hostname") or metadata.get("host"),
    )


def stale_worker_count(alias: str, threshold: timedelta, *, has_workers_table: bool) -> int | None:
    """Registered workers whose heartbeat is `threshold` old or older (the workers page's
    rule); None when the schema keeps no registrations."""
    if not has_workers_table:
        return None
    return Worker.objects.using(alias).stale(threshold).count()
