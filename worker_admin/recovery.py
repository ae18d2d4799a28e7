"""The stale-worker sweep: a WorkerUtils operation that is not one schema function but a few
statements in one transaction (GRAPHILE_WORKER.md §5). The cleanups, the other such operation,
are in worker_admin.cleanup and re-exported here.

The sweep mirrors the Rust `sweep_stale_workers`: the same advisory lock key, so the console never
races a Rust sweeper, and the same "dead" rule (stale registered workers, three times the threshold
for one holding an `infrastructure_resilient` job, plus orphan lock holders). One difference on
purpose: in a mixed fleet, Node workers never register, so every Node lock older than the threshold
looks orphaned and the Rust sweep would re-queue a job that may still be running. Orphan lock
holders whose ids look like Node's (`worker-<hex>`, `pool-<hex>`, `otpool-<hex>`) are therefore
left out unless `include_node_lock_holders=True`, and reported in `excluded` with the reason.
A second one: a job whose key was replaced or removed while its worker was dead (superseded) is
only unlocked, never given an attempt back, so its replacement is the only copy that runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connections, transaction

from worker_admin.cleanup import (
    GC_TASK_IDENTIFIERS_WARNING,
    CleanupPreview,
    CleanupResult,
    CleanupTask,
    cleanup,
    plural,
    preview_cleanup,
    require_usable,
)
from worker_admin.installer import quote_schema
from worker_admin.schema import Capabilities
from worker_admin.utils import FeatureUnavailable, InvalidJobAction

__all__ = [
    "GC_TASK_IDENTIFIERS_WARNING",
    "NODE_WORKER_ID",
    "RESILIENT_FACTOR",
    "RESILIENT_FLAG",
    "SWEEP_LOCK_KEY",
    "CleanupPreview",
    "CleanupResult",
    "CleanupTask",
    "RecoverableJob",
    "SweepStaleWorkersOptions",
    "SweepStaleWorkersResult",
    "WorkerRecoveryConfig",
    "cleanup",
    "format_duration",
    "preview_cleanup",
    "sweep_stale_workers",
]

# The key pair Rust's sweeper takes with pg_try_advisory_xact_lock ("GWRS", "SWEP").
SWEEP_LOCK_KEY = (1196905043, 1398228304)
RESILIENT_FLAG = "infrastructure_resilient"
RESILIENT_FACTOR = 3
# Node worker ids: `worker-<hex>` (≤ 0.16, one per worker), `pool-<hex>`/`otpool-<hex>` (≥ 0.17).
NODE_WORKER_ID = re.compile(r"^(?:worker|pool|otpool)-[0-9a-f]+$", re.IGNORECASE)


# -- sweep ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepStaleWorkersOptions:
    sweep_threshold: timedelta = timedelta(minutes=5)
    recovery_delay: timedelta = timedelta(seconds=30)
    dry_run: bool = False
    # Our mixed-fleet safety: orphan lock holders with Node-looking ids are skipped unless True.
    include_node_lock_holders: bool = False
    # A dry run lists at most this many of the jobs (the count stays exact); None lists them all.
    # A real sweep always reads every job it recovers, for its audit entry.
    list_limit: int | None = None
    # The Rust knobs: a stale worker holding a job with one of these flags is dead only after
    # sweep_threshold × the multiplier. No flags: no worker gets the longer threshold.
    resilient_sweep_threshold_multiplier: int = RESILIENT_FACTOR
    resilient_job_flags: list[str] = field(default_factory=lambda: [RESILIENT_FLAG])

    def validate(self) -> None:
        if not isinstance(self.sweep_threshold, timedelta) or self.sweep_threshold <= timedelta(0):
            raise InvalidJobAction("sweep_threshold must be a positive duration (a timedelta).")
        if not isinstance(self.recovery_delay, timedelta) or self.recovery_delay < timedelta(0):
            raise InvalidJobAction("recovery_delay must be a duration of zero or more.")
        for name in ("dry_run", "include_node_lock_holders"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidJobAction(f"{name} must be True or False.")
        limit = self.list_limit
        whole = isinstance(limit, int) and not isinstance(limit, bool)
        if limit is not None and (not whole or limit < 1):
            raise InvalidJobAction("list_limit must be a positive whole number, or None.")
        _check_resilience(self.resilient_sweep_threshold_multiplier, self.resilient_job_flags)


def _check_resilience(multiplier: object, flags: object) -> None:
    if not isinstance(multiplier, int) or isinstance(multiplier, bool) or multiplier < 1:
        raise InvalidJobAction(
            "resilient_sweep_threshold_multiplier must be a whole number of 1 or more."
        )
    if isinstance(flags, str | bytes) or not isinstance(flags, list | tuple):
        raise InvalidJobAction("resilient_job_flags must be a list of flag names.")
    if not all(isinstance(flag, str) and flag for flag in flags):
        raise InvalidJobAction("resilient_job_flags must hold non-empty flag names (text).")


@dataclass(frozen=True)
class WorkerRecoveryConfig:
    """A worker fleet's recovery settings (the Rust runner's), for sweeping with exactly the
    values the workers use: threshold and delay as configured there, not the sweep defaults."""

    sweep_threshold: timedelta = timedelta(minutes=5)
    recovery_delay: timedelta = timedelta(seconds=30)
    heartbeat_interval: timedelta = timedelta(seconds=30)
    resilient_sweep_threshold_multiplier: int = RESILIENT_FACTOR
    resilient_job_flags: list[str] = field(default_factory=lambda: [RESILIENT_FLAG])

    def options(
        self, *, dry_run: bool = False, include_node_lock_holders: bool = False
    ) -> SweepStaleWorkersOptions:
        if self.heartbeat_interval * 2 > self.sweep_threshold:
            raise InvalidJobAction(
                "sweep_threshold should be at least twice the heartbeat interval, or a worker "
                "that misses one heartbeat counts as dead."
            )
        _check_resilience(self.resilient_sweep_threshold_multiplier, self.resilient_job_flags)
        return SweepStaleWorkersOptions(
            sweep_threshold=self.sweep_threshold,
            recovery_delay=self.recovery_delay,
            dry_run=dry_run,
            include_node_lock_holders=include_node_lock_holders,
            resilient_sweep_threshold_multiplier=self.resilient_sweep_threshold_multiplier,
            resilient_job_flags=list(self.resilient_job_flags),
        )


@dataclass(frozen=True)
class RecoverableJob:
    """A job held by a dead worker, with what the recovery does (or would do) to it."""

    id: int
    task_identifier: str
    locked_by: str
    locked_at: datetime
    attempts: int
    attempts_after: int
    run_at: datetime
    run_at_after: datetime
    # Its key was replaced (or removed) while the worker was dead: the sweep only unlocks it,
    # and it stays failed. `replaced_by`: the job that took its key, when that can be told.
    superseded: bool = False
    replaced_by: int | None = None

    @property
    def plan(self) -> str:
        """What the sweep does (or would do) to the job, in words."""
        if not self.superseded:
            return "recover"
        if self.replaced_by is not None:
            return f"superseded by job {self.replaced_by}"
        return "superseded (key replaced)"


@dataclass(frozen=True)
class SweepStaleWorkersResult:
    """What a sweep found and did. `worker_ids` are the dead workers (recovered and deregistered,
    or in a dry run the ones that would be), each with its reason in `reasons`; `excluded` are the
    candidates left alone and why; `jobs` are the jobs they held, read in the sweep's transaction
    just before the recovery. `lock_busy`: another sweeper held the lock, nothing was looked at."""

    worker_ids: list[str]
    recovered_count: int
    dry_run: bool
    reasons: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    jobs: list[RecoverableJob] = field(default_factory=list)
    lock_busy: bool = False
    # How many jobs the dead workers hold, when `jobs` lists only the first (list_limit).
    job_count: int | None = None
    # Superseded jobs among them (all of them, not only those listed): unlocked, left failed.
    superseded_count: int = 0

    @property
    def jobs_found(self) -> int:
        return self.job_count if self.job_count is not None else len(self.jobs)

    @property
    def changed_job_ids(self) -> list[int]:
        """The jobs a real sweep changed (recovered, or unlocked when superseded)."""
        if self.dry_run or not (self.recovered_count or self.superseded_count):
            return []
        return [job.id for job in self.jobs]

    @property
    def summary(self) -> str:
        if self.lock_busy:
            return "another sweeper holds the sweep lock; nothing was checked or changed"
        jobs = self.jobs_found - self.superseded_count if self.dry_run else self.recovered_count
        text = "dry run: would recover" if self.dry_run else "recovered"
        text += f" {plural(jobs, 'job')} from {plural(len(self.worker_ids), 'dead worker')}"
        if self.superseded_count:
            done = "would be unlocked" if self.dry_run else "unlocked"
            text += f"; {plural(self.superseded_count, 'superseded job')} {done} and left failed"
        if self.excluded:
            text += f"; {len(self.excluded):,} left alone"
        return text


def sweep_stale_workers(
    alias: str, schema: str, options: SweepStaleWorkersOptions | None = None
) -> SweepStaleWorkersResult:
    """One transaction: take Rust's sweep lock (or report lock_busy), find the dead workers, then
    recover their jobs and delete their registrations (a dry run changes nothing)."""
    options = options or SweepStaleWorkersOptions()
    if not isinstance(options, SweepStaleWorkersOptions):
        raise InvalidJobAction("options must be a SweepStaleWorkersOptions.")
    options.validate()
    _require_recovery(alias, schema)
    q = quote_schema(schema)
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", list(SWEEP_LOCK_KEY))
        if not cursor.fetchone()[0]:
            return SweepStaleWorkersResult([], 0, options.dry_run, lock_busy=True)
        reasons, excluded = _dead_workers(cursor, q, options)
        dead = sorted(reasons)
        if not dead:
            return SweepStaleWorkersResult([], 0, options.dry_run, reasons, excluded)
        jobs, job_count, superseded = _recoverable_jobs(cursor, q, dead, options)
        recovered = 0
        if not options.dry_run:
            # Superseded jobs first, by the ids the listing decided on: unlocked and nothing
            # else, so recover_dead_worker_jobs no longer sees them and cannot give them an
            # attempt back (their replacement runs instead).
            _unlock_superseded(cursor, q, [job.id for job in jobs if job.superseded])
            cursor.execute(
                f"SELECT {q}.recover_dead_worker_jobs(%s::text[], %s::interval)",
                [dead, options.recovery_delay],
            )
            recovered = cursor.fetchone()[0]
            cursor.execute(f"SELECT {q}.delete_stale_workers(%s::text[])", [dead])
    return SweepStaleWorkersResult(
        dead,
        recovered,
        options.dry_run,
        reasons,
        excluded,
        jobs,
        job_count=job_count,
        superseded_count=superseded,
    )


def _dead_workers(
    cursor, q: str, options: SweepStaleWorkersOptions
) -> tuple[dict[str, str], dict[str, str]]:
    """(dead worker id → reason, candidate left alone → reason), by the schema's own lists."""
    threshold = options.sweep_threshold
    flags = list(options.resilient_job_flags)
    # Stale: the schema's list_stale_workers (heartbeat strictly older than the threshold, as in
    # Rust's SQL). The longer threshold for resilient jobs is inclusive, as in Rust's sweep.
    # One pass over the locked jobs (locked_by IS NOT NULL: as many rows as jobs running, an
    # index scan with console_jobs_locked), not an EXISTS per stale worker: with few flagged
    # jobs that EXISTS was a sequential scan of every job, per worker (seconds at 10M jobs).
    cursor.execute(
        f"""
        WITH held AS (
            SELECT j.locked_by, bool_or(coalesce(j.flags ?| %s::text[], false)) AS resilient
            FROM {q}._private_jobs AS j WHERE j.locked_by IS NOT NULL GROUP BY j.locked_by
        )
        SELECT s.worker_id, now() - w.last_heartbeat_at, coalesce(held.resilient, false)
        FROM {q}.list_stale_workers(%s::interval) AS s
        JOIN {q}._private_workers AS w ON w.id = s.worker_id
        LEFT JOIN held ON held.locked_by = s.worker_id
        """,
        [flags, threshold],
    )
    reasons: dict[str, str] = {}
    excluded: dict[str, str] = {}
    resilient_after = threshold * options.resilient_sweep_threshold_multiplier
    holds = _resilient_job(flags)
    for worker_id, age, resilient in cursor.fetchall():
        if not resilient:
            reasons[worker_id] = f"stale heartbeat {format_duration(age)} ago"
        elif age >= resilient_after:
            reasons[worker_id] = (
                f"stale heartbeat {format_duration(age)} ago, holds {holds}: "
                f"dead after {format_duration(resilient_after)}"
            )
        else:
            excluded[worker_id] = (
                f"stale heartbeat {format_duration(age)} ago, but holds {holds}: "
                f"dead only after {format_duration(resilient_after)}"
            )
    cursor.execute(
        f"""
        WITH oldest AS (
            SELECT h.locked_by, min(h.locked_at) AS locked_at FROM (
                SELECT locked_by, locked_at FROM {q}._private_jobs WHERE locked_by IS NOT NULL
                UNION ALL
                SELECT locked_by, locked_at FROM {q}._private_job_queues
                WHERE locked_by IS NOT NULL) AS h
            GROUP BY h.locked_by
        )
        SELECT o.worker_id, now() - oldest.locked_at
        FROM {q}.list_orphan_locked_workers(%s::interval) AS o
        JOIN oldest ON oldest.locked_by = o.worker_id
        """,
        [threshold],
    )
    for worker_id, lock_age in cursor.fetchall():
        held = f"lock held {format_duration(lock_age)}"
        if NODE_WORKER_ID.match(worker_id) and not options.include_node_lock_holders:
            excluded[worker_id] = (
                f"looks like a Node worker, which never registers: its job may still be "
                f"running ({held}); a sweep with Node lock holders included recovers it"
            )
        else:
            reasons[worker_id] = f"orphan lock: not registered, {held}"
    return reasons, excluded


# A job is superseded when someone gave up on it after its worker took it: add_job/add_jobs
# (replacing its key) and remove_job clear the key of a locked job and use up its attempts, and
# stamp updated_at, which taking a job (get_job) never touches. The updated_at test keeps a
# keyless job that is simply on its last attempt (attempts = max_attempts once taken)
# recoverable, as Rust recovers it. (A Node worker run with useNodeTime stamps locked_at with its
# own clock; a clock far behind the database's could make such a last attempt look superseded.)
_SUPERSEDED = "(j.key IS NULL AND j.attempts >= j.max_attempts AND j.updated_at > j.locked_at)"
# The job that took the key: add_job inserts it in the transaction that superseded the old one,
# so its created_at is the old job's updated_at. Told only when exactly one job matches.
_REPLACEMENT = """(SELECT min(r.id) FROM {q}._private_jobs AS r
    WHERE r.created_at = j.updated_at AND r.key IS NOT NULL AND r.id > j.id HAVING count(*) = 1)"""


def _recoverable_jobs(
    cursor, q: str, dead: list[str], options: SweepStaleWorkersOptions
) -> tuple[list[RecoverableJob], int | None, int]:
    """The dead workers' jobs and their values after the sweep (a superseded job keeps its
    attempts and run_at), their count when a dry run's list_limit cut the list, and how many
    are superseded. A real sweep reads them FOR UPDATE, the rows it is about to update anyway,
    so the list is exactly what it changes; a dry run takes no row locks. The dry run and the
    sweep both decide here, so they always agree."""
    limit = options.list_limit if options.dry_run else None
    cursor.execute(
        f"""
        SELECT j.id, t.identifier, j.locked_by, j.locked_at, j.attempts,
               CASE WHEN s.superseded THEN j.attempts ELSE greatest(0, j.attempts - 1) END,
               j.run_at,
               CASE WHEN s.superseded THEN j.run_at
                    ELSE greatest(j.run_at, now() + %s::interval) END,
               s.superseded,
               CASE WHEN s.superseded THEN {_REPLACEMENT.format(q=q)} END
        FROM {q}._private_jobs AS j
        JOIN {q}._private_tasks AS t ON t.id = j.task_id
        CROSS JOIN LATERAL (SELECT {_SUPERSEDED} AS superseded) AS s
        WHERE j.locked_by = ANY(%s::text[])
        ORDER BY j.id
        {"" if options.dry_run else "FOR UPDATE OF j"}
        {"" if limit is None else "LIMIT %s"}
        """,
        [options.recovery_delay, dead, *([] if limit is None else [limit])],
    )
    jobs = [RecoverableJob(*row) for row in cursor.fetchall()]
    superseded = sum(1 for job in jobs if job.superseded)
    if limit is None or len(jobs) < limit:
        return jobs, None, superseded
    cursor.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {_SUPERSEDED}) FROM {q}._private_jobs AS j "
        "WHERE j.locked_by = ANY(%s::text[])",
        [dead],
    )
    total, superseded = cursor.fetchone()
    return jobs, total, superseded


def _unlock_superseded(cursor, q: str, job_ids: list[int]) -> None:
    if job_ids:
        cursor.execute(
            f"UPDATE {q}._private_jobs SET locked_at = NULL, locked_by = NULL "
            "WHERE id = ANY(%s::bigint[])",
            [job_ids],
        )


def _resilient_job(flags: list[str]) -> str:
    if flags == [RESILIENT_FLAG]:
        return f"an {RESILIENT_FLAG} job"
    return "a job flagged " + " or ".join(flags)


def _require_recovery(alias: str, schema: str) -> Capabilities:
    caps = require_usable(alias, schema)
    if not caps.has_recovery:
        raise FeatureUnavailable(
            f"Schema {schema} does not have the worker-recovery extension (_private_workers and "
            "its functions), so there are no heartbeats to sweep by. Add it with "
            "`python3 manage.py graphile_worker migrate --add-recovery`, or release known dead "
            "workers' locks with force-unlock."
        )
    return caps


def format_duration(value: timedelta) -> str:
    """A duration as "7m 12s", "6h" or "1d 2h": whole seconds, zero parts left out."""
    seconds = max(0, int(value.total_seconds()))
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"
