"""Who holds what: registered (heartbeating) workers and every lock holder, read-only.

Lock holders come from `locked_by` on jobs and queues. Their id tells their kind: Node
workers (`worker-<hex>`, Node 0.16 and older) and pools (`pool-<hex>`/`otpool-<hex>`, 0.17+)
never register, so only Rust workers (`graphile_worker_<hex>`) can be matched to a heartbeat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min

from worker_admin.models import Job, JobQueue, Worker, heartbeat_is_stale
from worker_admin.stats import database_now

# A worker whose heartbeat is younger than this counts as alive (recovery pages and the API).
FRESH_HEARTBEAT = timedelta(minutes=1)
# Minutes without a heartbeat before a worker is called stale (workers page and /metrics).
DEFAULT_THRESHOLD = 5

KINDS = [
    (re.compile(r"^graphile_worker_[0-9a-f]+$"), "Rust worker"),
    (re.compile(r"^(?:ot)?pool-[0-9a-f]+$"), "Node pool"),
    (re.compile(r"^worker-[0-9a-f]+$"), "Node worker"),
]
FOUR_HOURS = timedelta(hours=4)


def holder_kind(worker_id: str) -> str:
    for pattern, kind in KINDS:
        if pattern.match(worker_id):
            return kind
    return "unknown"


@dataclass(frozen=True)
class RegisteredWorker:
    id: str
    started_at: datetime
    last_heartbeat_at: datetime
    heartbeat_age: timedelta
    stale: bool
    pid: object
    host: object
    jobs_held: int
    queues_held: int


@dataclass(frozen=True)
class LockHolder:
    id: str
    kind: str
    jobs_held: int
    queues_held: int
    oldest_lock_at: datetime
    oldest_lock_age: timedelta
    registered: bool
    stale: bool | None  # None when not registered

    @property
    def past_four_hours(self) -> bool:
        return self.oldest_lock_age >= FOUR_HOURS


@dataclass(frozen=True)
class Fleet:
    now: datetime
    threshold: timedelta
    workers: list[RegisteredWorker] | None  # None: no recovery extension
    holders: list[LockHolder]

    @property
    def stale_count(self) -> int:
        return sum(1 for w in self.workers or [] if w.stale)


def fleet(alias: str, threshold: timedelta, *, has_workers_table: bool) -> Fleet:
    now = database_now(alias)
    jobs_by_holder = {
        row["locked_by"]: (row["n"], row["oldest"])
        for row in Job.objects.using(alias)
        # locked_by too: the same rows (a lock has both), and the opt-in console_jobs_locked
        # index, partial on locked_by, then serves this read instead of a scan of every job.
        .filter(locked_at__isnull=False, locked_by__isnull=False)
        .values("locked_by")
        .annotate(n=Count("id"), oldest=Min("locked_at"))
    }
    queues_by_holder = {
        row["locked_by"]: (row["n"], row["oldest"])
        for row in JobQueue.objects.using(alias)
        .filter(locked_at__isnull=False)
        .values("locked_by")
        .annotate(n=Count("id"), oldest=Min("locked_at"))
    }
    registered = (
        {w.id: w for w in Worker.objects.using(alias).order_by("id")} if has_workers_table else {}
    )
    workers = None
    if has_workers_table:
        workers = [
            _registered(w, now, threshold, jobs_by_holder, queues_by_holder)
            for w in registered.values()
        ]
        workers.sort(key=lambda w: not w.stale)  # stale ones first (stable: then by id)
    holders = [
        _holder(holder, now, threshold, jobs_by_holder, queues_by_holder, registered)
        for holder in sorted(set(jobs_by_holder) | set(queues_by_holder), key=str)
        if holder is not None
    ]
    holders.sort(key=lambda h: h.oldest_lock_at)
    return Fleet(now, threshold, workers, holders)


def _registered(w: Worker, now, threshold, jobs_by_holder, queues_by_holder) -> RegisteredWorker:
    metadata = w.metadata if isinstance(w.metadata, dict) else {}
    age = now - w.last_heartbeat_at
    return RegisteredWorker(
        id=w.id,
        started_at=w.started_at,
        last_heartbeat_at=w.last_heartbeat_at,
        heartbeat_age=age,
        stale=heartbeat_is_stale(age, threshold),
        pid=metadata.get("pid"),
        host=metadata.get("hostname") or metadata.get("host"),
        jobs_held=jobs_by_holder.get(w.id, (0, None))[0],
        queues_held=queues_by_holder.get(w.id, (0, None))[0],
    )


def _holder(holder, now, threshold, jobs_by_holder, queues_by_holder, registered) -> LockHolder:
    jobs, job_oldest = jobs_by_holder.get(holder, (0, None))
    queues, queue_oldest = queues_by_holder.get(holder, (0, None))
    oldest = min(t for t in (job_oldest, queue_oldest) if t is not None)
    worker = registered.get(holder)
    return LockHolder(
        id=holder,
        kind=holder_kind(holder),
        jobs_held=jobs,
        queues_held=queues,
        oldest_lock_at=oldest,
        oldest_lock_age=now - oldest,
        registered=worker is not None,
        stale=(
            heartbeat_is_stale(now - worker.last_heartbeat_at, threshold)
            if worker is not None
            else None
        ),
    )
