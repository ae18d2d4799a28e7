"""A simulated worker fleet that keeps the demo alive (GRAPHILE_WORKER.md §2–5).

Each `SimulatedWorker` behaves like a Rust worker with the recovery extension: it registers
(`worker_heartbeat` with metadata marking it as simulated), heartbeats, locks one ready job at a
time (and its queue, which serialises that queue's jobs), "works" for a while, then deletes the
job (success) or records the error with Graphile Worker's backoff (failure). A `Refiller` adds
new demo jobs through WorkerUtils so the queue never drains.

`kill()` simulates a crash: the thread stops without deregistering or unlocking, so its
heartbeat goes stale and its job stays locked, which is what the console's sweep must find.

Every worker uses its own psycopg connection (never Django's thread-local one), autocommit off,
one short transaction per step. Workers only ever lock jobs of the demo's own tasks.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from django.conf import settings
from django.db import connections
from django.utils import timezone

from worker_admin import databases
from worker_admin.demo.seed import ERRORS, TASKS, _payload
from worker_admin.installer import quote_schema
from worker_admin.schema import capabilities
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

DEMO_TASKS = tuple(TASKS)
# Seconds a job "runs" per task (uniform range); everything else takes DEFAULT_WORK_SECONDS.
DEFAULT_WORK_SECONDS = (0.2, 3.0)
WORK_SECONDS = {"generate_report": (5.0, 20.0), "nightly_digest": (2.0, 8.0)}
# Chance that one attempt fails, per task (weighted by the seed's task mix: about 15 %).
FAILURE_RATES = {
    "send_email": 0.08,
    "deliver_webhook": 0.25,
    "resize_image": 0.12,
    "sync_inventory": 0.15,
    "generate_report": 0.20,
    "charge_card": 0.18,
    "nightly_digest": 0.10,
}
# Django connection options that are not libpq parameters.
_NON_LIBPQ_OPTIONS = {"pool", "assume_role", "isolation_level", "server_side_binding"}


class FleetRefused(Exception):
    """The database is not one the simulation may touch."""


def connect(alias: str | None = None) -> psycopg.Connection:
    """A new psycopg connection to the worker database, from Django's settings for `alias`."""
    config = connections[alias or databases.current().alias].settings_dict
    params = {k: v for k, v in config["OPTIONS"].items() if k not in _NON_LIBPQ_OPTIONS}
    for key, name in [("NAME", "dbname"), ("USER", "user"), ("PASSWORD", "password")]:
        if config.get(key):
            params[name] = config[key]
    for key, name in [("HOST", "host"), ("PORT", "port")]:
        if config.get(key):
            params[name] = str(config[key])
    params["application_name"] = "graphile-console-demo-worker"
    return psycopg.connect(**params, autocommit=False)


def check_demo_database(
    alias: str | None = None, schema: str | None = None, *, force: bool = False
) -> None:
    """Refuse to simulate workers unless the schema has the recovery extension and holds only
    demo jobs: real workers' jobs must never be processed by a simulation."""
    alias = alias or databases.current().alias
    schema = schema or settings.GRAPHILE_WORKER_SCHEMA
    caps = capabilities(alias, schema)
    if caps.problem is not None:
        raise FleetRefused(caps.problem)
    if not caps.has_recovery:
        raise FleetRefused(
            f"Schema {schema} lacks the worker-recovery extension (_private_workers and its "
            "functions); add it with `python manage.py graphile_worker migrate --add-recovery`."
        )
    if force:
        return
    q = quote_schema(schema)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT t.identifier FROM {q}._private_tasks t WHERE t.identifier <> ALL(%s) "
            f"AND EXISTS (SELECT 1 FROM {q}._private_jobs j WHERE j.task_id = t.id) "
            "ORDER BY t.identifier LIMIT 5",
            [list(DEMO_TASKS)],
        )
        foreign = [row[0] for row in cursor.fetchall()]
    if foreign:
        raise FleetRefused(
            "this database has non-demo jobs, and simulated workers run on demo data only. "
            f"Non-demo tasks: {', '.join(foreign)}"
        )


@dataclass(frozen=True)
class LockedJob:
    id: int
    task: str
    attempts: int
    queue_id: int | None


class SimulatedWorker:
    """One simulated Rust worker in its own thread, with its own database connection."""

    def __init__(
        self,
        *,
        alias: str | None = None,
        schema: str | None = None,
        heartbeat_seconds: float = 10.0,
        work_seconds: tuple[float, float] | None = None,
        failure_rate: float | None = None,
        idle_seconds: float = 1.0,
        rng: random.Random | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.id = f"graphile_worker_{secrets.token_hex(5)}"
        self.alias = alias or databases.current().alias
        self.q = quote_schema(schema or settings.GRAPHILE_WORKER_SCHEMA)
        self.heartbeat_seconds = heartbeat_seconds
        self.work_seconds = work_seconds  # None: per task (WORK_SECONDS)
        self.failure_rate = failure_rate  # None: per task (FAILURE_RATES)
        self.idle_seconds = idle_seconds
        self.rng = rng or random.Random()
        self.on_event = on_event or (lambda message: None)
        self.completed = 0
        self.failed = 0
        self.last_error: BaseException | None = None
        self.registered = threading.Event()
        self._stop = threading.Event()
        self._killed = False
        self._thread = threading.Thread(target=self._run, name=f"demo-{self.id}", daemon=True)
        self._conn: psycopg.Connection | None = None
        self._next_beat = 0.0

    # -- control --------------------------------------------------------------------------

    def start(self) -> SimulatedWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly: release any job still held (its attempt does not count), deregister."""
        self._stop.set()
        self._thread.join(timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """Simulate a crash: stop without deregistering or unlocking anything."""
        self._killed = True
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def crashed(self) -> bool:
        return self._killed

    # -- the worker's loop ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._conn = connect(self.alias)
            self._step(
                f"SELECT {self.q}.worker_heartbeat(%s, json_build_object('pid', %s::int, "
                "'hostname', %s::text, 'simulated', true))",
                [self.id, os.getpid(), socket.gethostname()],
            )
            self._next_beat = time.monotonic() + self.heartbeat_seconds
            self.registered.set()
            while not self._stop.is_set():
                try:
                    self._beat_if_due()
                    job = self._lock_one()
                    if job is None:
                        self._pause(self.idle_seconds)
                        continue
                    self._pause(self.rng.uniform(*self._work_range(job.task)))
                    if self._stop.is_set():
                        break  # stop: released below; kill: the lock stays
                    self._finish(job)
                except psycopg.Error as exc:  # the database may be restarting: retry later
                    self._recover_from(exc)
        except Exception as exc:
            self.last_error = exc
            self.on_event(f"{self.id} stopped on an error: {exc}")
        finally:
            try:
                if not self._killed and self.registered.is_set():
                    self._release_and_deregister()
            except psycopg.Error as exc:
                self.last_error = exc
            finally:
                if self._conn is not None:
                    self._conn.close()

    def _pause(self, seconds: float) -> None:
        """Sleep in short slices, heartbeating when due; return early on stop or kill."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(min(remaining, 0.1, max(self._next_beat - time.monotonic(), 0.01)))
            if not self._stop.is_set():
                self._beat_if_due()

    def _beat_if_due(self) -> None:
        if time.monotonic() >= self._next_beat:
            self._step(f"SELECT {self.q}.worker_heartbeat(%s)", [self.id])
            self._next_beat = time.monotonic() + self.heartbeat_seconds

    def _step(self, sql: str, params: list) -> None:
        """One statement in its own short transaction."""
        with self._conn.cursor() as cursor:
            cursor.execute(sql, params)
        self._conn.commit()

    def _lock_one(self) -> LockedJob | None:
        """Lock the first ready demo job (priority, run_at, id) whose queue is free, and that
        queue; all in one transaction. None when nothing is ready."""
        q = self.q
        with self._conn.cursor() as cursor:
            cursor.execute(
                f"SELECT j.id, j.job_queue_id FROM {q}._private_jobs j "
                "WHERE j.is_available AND j.run_at <= now() "
                f"AND j.task_id IN (SELECT t.id FROM {q}._private_tasks t "
                "WHERE t.identifier = ANY(%s)) "
                "AND (j.job_queue_id IS NULL OR j.job_queue_id IN "
                f"(SELECT jq.id FROM {q}._private_job_queues jq WHERE jq.is_available)) "
                "ORDER BY j.priority, j.run_at, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
                [list(DEMO_TASKS)],
            )
            row = cursor.fetchone()
            if row is None:
                self._conn.rollback()
                return None
            job_id, queue_id = row
            if queue_id is not None:
                # Another worker may have taken the queue since: the update then waits for its
                # commit, re-checks locked_at and matches nothing; try again next round.
                cursor.execute(
                    f"UPDATE {q}._private_job_queues SET locked_at = now(), locked_by = %s "
                    "WHERE id = %s AND locked_at IS NULL RETURNING id",
                    [self.id, queue_id],
                )
                if cursor.fetchone() is None:
                    self._conn.rollback()
                    return None
            cursor.execute(
                f"UPDATE {q}._private_jobs j SET locked_at = now(), locked_by = %s, "
                "attempts = j.attempts + 1, updated_at = now() "
                f"FROM {q}._private_tasks t WHERE j.id = %s AND t.id = j.task_id "
                "RETURNING t.identifier, j.attempts",
                [self.id, job_id],
            )
            task, attempts = cursor.fetchone()
        self._conn.commit()
        return LockedJob(job_id, task, attempts, queue_id)

    def _work_range(self, task: str) -> tuple[float, float]:
        return self.work_seconds or WORK_SECONDS.get(task, DEFAULT_WORK_SECONDS)

    def _finish(self, job: LockedJob) -> None:
        """Complete (delete) or fail the job, and unlock its queue, in one transaction. Only
        while we still hold the job: a sweep may have recovered it meanwhile."""
        q = self.q
        rate = self.failure_rate if self.failure_rate is not None else FAILURE_RATES[job.task]
        fails = self.rng.random() < rate
        with self._conn.cursor() as cursor:
            if fails:
                error = self.rng.choice(ERRORS[job.task]).replace(
                    "{n}", str(self.rng.randint(100, 9999))
                )
                cursor.execute(
                    f"UPDATE {q}._private_jobs SET last_error = %s, "
                    "run_at = greatest(now(), run_at) "
                    "+ exp(least(attempts, 10)) * interval '1 second', "
                    "locked_at = NULL, locked_by = NULL, updated_at = now() "
                    "WHERE id = %s AND locked_by = %s",
                    [error, job.id, self.id],
                )
            else:
                cursor.execute(
                    f"DELETE FROM {q}._private_jobs WHERE id = %s AND locked_by = %s",
                    [job.id, self.id],
                )
            done = cursor.rowcount == 1
            if job.queue_id is not None:
                cursor.execute(
                    f"UPDATE {q}._private_job_queues SET locked_at = NULL, locked_by = NULL "
                    "WHERE id = %s AND locked_by = %s",
                    [job.queue_id, self.id],
                )
        self._conn.commit()
        if done and fails:
            self.failed += 1
        elif done:
            self.completed += 1

    def _release_and_deregister(self) -> None:
        """On a clean stop: give back what we hold (the interrupted attempt does not count),
        then deregister."""
        q = self.q
        with self._conn.cursor() as cursor:
            cursor.execute(
                f"UPDATE {q}._private_jobs SET locked_at = NULL, locked_by = NULL, "
                "attempts = greatest(0, attempts - 1), updated_at = now() WHERE locked_by = %s",
                [self.id],
            )
            cursor.execute(
                f"UPDATE {q}._private_job_queues SET locked_at = NULL, locked_by = NULL "
                "WHERE locked_by = %s",
                [self.id],
            )
            cursor.execute(f"SELECT {q}.worker_deregister(%s)", [self.id])
        self._conn.commit()

    def _recover_from(self, exc: psycopg.Error) -> None:
        self.last_error = exc
        self.on_event(f"{self.id}: database error, retrying: {exc}")
        try:
            if self._conn.closed:
                self._conn = connect(self.alias)
            else:
                self._conn.rollback()
        except psycopg.Error:
            pass
        self._stop.wait(1.0)


def _fresh_job(rng: random.Random, n: int) -> RawJobSpec:
    """A new demo job like the seed's, mostly ready now, a few due shortly; no job keys (a key
    could replace a seeded job)."""
    identifier = rng.choices(list(TASKS), weights=[t[0] for t in TASKS.values()])[0]
    _, queue, max_attempts = TASKS[identifier]
    delay = 0 if rng.random() < 0.85 else rng.randint(5, 120)
    spec = JobSpec(
        queue_name=queue if queue and rng.random() < 0.9 else None,
        run_at=timezone.now() + timedelta(seconds=delay),
        max_attempts=max_attempts,
        priority=rng.choice([0, 0, 0, 0, 1, 5, -5]),
        flags=["infrastructure_resilient"] if identifier == "charge_card" else None,
    )
    return RawJobSpec(identifier, _payload(rng, identifier, n), spec)


class Refiller:
    """Adds demo jobs at `jobs_per_second` (in batches every `interval` seconds) through
    WorkerUtils.add_raw_jobs, while fewer than `max_ready` jobs are ready."""

    def __init__(
        self,
        utils: WorkerUtils | None = None,
        *,
        jobs_per_second: float = 2.0,
        interval: float = 3.0,
        max_ready: int = 20_000,
        rng: random.Random | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.utils = utils or WorkerUtils()
        self.jobs_per_second = jobs_per_second
        self.interval = interval
        self.max_ready = max_ready
        self.rng = rng or random.Random()
        self.on_event = on_event or (lambda message: None)
        self.added = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-refiller", daemon=True)

    def start(self) -> Refiller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        owed = 0.0
        try:
            while not self._stop.wait(self.interval):
                owed += self.jobs_per_second * self.interval
                count = int(owed)
                if count < 1:
                    continue
                owed -= count
                try:
                    if self._ready_jobs() < self.max_ready:
                        specs = [_fresh_job(self.rng, self.added + i) for i in range(count)]
                        self.added += len(self.utils.add_raw_jobs(specs))
                except Exception as exc:  # the database may be restarting: try again later
                    self.on_event(f"demo refiller: {exc}")
                    connections[self.utils.alias].close()
        finally:
            connections[self.utils.alias].close()  # this thread's Django connection

    def _ready_jobs(self) -> int:
        q = quote_schema(self.utils.schema)
        with connections[self.utils.alias].cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {q}._private_jobs WHERE is_available AND run_at <= now()"
            )
            return cursor.fetchone()[0]


class DemoFleet:
    """`workers` simulated workers plus a refiller; optionally crashes one after a delay."""

    def __init__(
        self,
        *,
        workers: int = 3,
        heartbeat_seconds: float = 10.0,
        jobs_per_second: float = 2.0,
        crash_one_after: float | None = None,
        utils: WorkerUtils | None = None,
        on_event: Callable[[str], None] | None = None,
        **worker_options,
    ) -> None:
        self.utils = utils or WorkerUtils()
        self.on_event = on_event or (lambda message: None)
        self.workers = [
            SimulatedWorker(
                alias=self.utils.alias,
                schema=self.utils.schema,
                heartbeat_seconds=heartbeat_seconds,
                on_event=self.on_event,
                **worker_options,
            )
            for _ in range(workers)
        ]
        self.refiller = (
            Refiller(self.utils, jobs_per_second=jobs_per_second, on_event=self.on_event)
            if jobs_per_second > 0
            else None
        )
        self.crash_one_after = crash_one_after
        self._crash_timer: threading.Timer | None = None

    def start(self) -> DemoFleet:
        for worker in self.workers:
            worker.start()
            self.on_event(
                f"started {worker.id} (simulated; heartbeat every {worker.heartbeat_seconds:g} s)"
            )
        if self.refiller is not None:
            self.refiller.start()
        if self.crash_one_after is not None and self.workers:
            self._crash_timer = threading.Timer(self.crash_one_after, self.crash_one)
            self._crash_timer.daemon = True
            self._crash_timer.start()
        return self

    def crash_one(self) -> str | None:
        """Kill the first running worker: it becomes a stale worker holding its lock."""
        for worker in self.workers:
            if worker.alive:
                self.kill(worker.id)
                return worker.id
        return None

    def kill(self, worker_id: str) -> None:
        worker = next(w for w in self.workers if w.id == worker_id)
        worker.kill()
        self.on_event(
            f"crashed {worker.id}: no more heartbeats, no deregistration, its lock stays "
            "(stale after the sweep threshold)"
        )

    def stop(self) -> None:
        if self._crash_timer is not None:
            self._crash_timer.cancel()
        if self.refiller is not None:
            self.refiller.stop()
        for worker in self.workers:
            if worker.alive:
                worker.stop()

    @property
    def completed(self) -> int:
        return sum(w.completed for w in self.workers)

    @property
    def failed(self) -> int:
        return sum(w.failed for w in self.workers)
