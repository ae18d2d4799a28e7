"""The sweep's dry run: who is dead, what their jobs become, read in one pass over the locked jobs.

The rules are worker_admin/recovery.py's (so the library's sweep and the console's agree):
stale = a registered worker whose heartbeat is older than the threshold (strictly, as the
schema's list_stale_workers); one holding a job flagged infrastructure_resilient is dead only
at threshold x 3 (inclusive); orphan = an unregistered lock holder (job or queue) whose oldest
lock is older than the threshold, left out when its id looks like a Node worker's unless Node
lock holders are included. The difference is the cost: the locked jobs are read once
(locked_by IS NOT NULL: as many rows as jobs running, an index scan with console_jobs_locked)
instead of an EXISTS over every job per stale worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import OperationalError

from worker_admin.counting import cancelled, statement_budget
from worker_admin.operations import releasing as rel
from worker_admin.recovery import (
    _SUPERSEDED,
    NODE_WORKER_ID,
    RESILIENT_FACTOR,
    RESILIENT_FLAG,
    _resilient_job,
    format_duration,
)

FLAGS = [RESILIENT_FLAG]


@dataclass
class Found:
    now: datetime
    dead: list[tuple[str, str]] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)
    pinned_workers: list[list] = field(default_factory=list)
    pinned_jobs: list[list] = field(default_factory=list)
    pinned_queues: list[list] = field(default_factory=list)
    rows: list[rel.Row] = field(default_factory=list)
    counts: list[tuple[str, str, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _select(q: str, where: str) -> str:
    return f"""
        SELECT j.id, j.revision, j.updated_at, j.locked_by, j.locked_at, t.identifier,
               j.attempts, j.max_attempts, j.run_at,
               left(split_part(coalesce(j.last_error, ''), E'\\n', 1), 200),
               {_SUPERSEDED}, coalesce(j.flags ?| %s::text[], false)
        FROM {q}._private_jobs AS j JOIN {q}._private_tasks AS t ON t.id = j.task_id
        WHERE {where}
        ORDER BY j.id
        """


def _locked_jobs(cursor, q: str) -> tuple[list[rel.LockedJob], dict[str, bool]]:
    """Every locked job (one pass), and per holder whether it holds a resilient job."""
    cursor.execute(_select(q, "j.locked_by IS NOT NULL"), [FLAGS])
    jobs, resilient = [], {}
    for *values, superseded, flagged in cursor.fetchall():
        job = rel.LockedJob(*values, superseded=superseded)
        jobs.append(job)
        resilient[job.locked_by] = resilient.get(job.locked_by, False) or flagged
    return jobs, resilient


def _locked_rows(cursor, q: str, holders: list[str]) -> list[rel.LockedJob]:
    """The jobs these ids hold (force-unlock), read like the sweep's."""
    cursor.execute(_select(q, "j.locked_by = ANY(%s::text[])"), [FLAGS, holders])
    return [rel.LockedJob(*values, superseded=s) for *values, s, _flagged in cursor.fetchall()]


def find(cursor, q: str, threshold: timedelta, delay: timedelta, include_node: bool) -> Found:
    cursor.execute("SELECT now()")
    found = Found(now=cursor.fetchone()[0])
    jobs, resilient = _locked_jobs(cursor, q)
    cursor.execute(
        f"SELECT locked_by, locked_at FROM {q}._private_job_queues WHERE locked_by IS NOT NULL"
    )
    queue_locks = cursor.fetchall()
    cursor.execute(f"SELECT id, last_heartbeat_at FROM {q}._private_workers ORDER BY id")
    registered = dict(cursor.fetchall())
    _decide(found, threshold, include_node, registered, resilient, jobs, queue_locks)
    dead = {worker for worker, _why in found.dead}
    mine = [job for job in jobs if job.locked_by in dead]
    _pin_and_show(cursor, q, found, mine, delay)
    found.pinned_queues = [
        [name, by, at and at.isoformat()] for name, by, at in _queue_rows(cursor, q, sorted(dead))
    ]
    return found


def _decide(found: Found, threshold, include_node, registered, resilient, jobs, queue_locks):
    now = found.now
    resilient_after = threshold * RESILIENT_FACTOR
    holds = _resilient_job(FLAGS)
    for worker, beat in registered.items():
        age = now - beat
        if age <= threshold:
            continue
        if not resilient.get(worker):
            why = f"stale heartbeat {format_duration(age)} ago"
        elif age >= resilient_after:
            why = (
                f"stale heartbeat {format_duration(age)} ago, holds {holds}: "
                f"dead after {format_duration(resilient_after)}"
            )
        else:
            found.excluded.append(
                (
                    worker,
                    f"stale heartbeat {format_duration(age)} ago, but holds {holds}: "
                    f"dead only after {format_duration(resilient_after)}",
                )
            )
            continue
        found.dead.append((worker, why))
        found.pinned_workers.append([worker, beat.isoformat()])
    oldest: dict[str, datetime] = {}
    for holder, locked_at in [(j.locked_by, j.locked_at) for j in jobs] + list(queue_locks):
        if holder not in registered and locked_at is not None:
            oldest[holder] = min(oldest.get(holder, locked_at), locked_at)
    for holder in sorted(oldest):
        age = now - oldest[holder]
        if age <= threshold:
            continue
        held = f"lock held {format_duration(age)}"
        if NODE_WORKER_ID.match(holder) and not include_node:
            found.excluded.append(
                (
                    holder,
                    f"looks like a Node worker, which never registers: its job may still be "
                    f"running ({held}); a sweep with Node lock holders included recovers it",
                )
            )
            continue
        found.dead.append((holder, f"orphan lock: not registered, {held}"))
        found.pinned_workers.append([holder, None])
    found.dead.sort()
    found.excluded.sort()


def _pin_and_show(cursor, q, found: Found, jobs: list[rel.LockedJob], delay: timedelta):
    run_after = found.now + delay
    superseded = [job for job in jobs if job.superseded]
    replaced = _replacements(cursor, q, superseded[: rel.PREVIEW_ROWS])
    pairs = []
    for job in jobs:
        plan = rel.SUPERSEDED if job.superseded else rel.RECOVER
        found.pinned_jobs.append(job.pin(plan))
        if job.superseded:
            by = replaced.get(job.id)
            said = f"stays failed: superseded by job {by}" if by else "stays failed: superseded"
        else:
            said = "recover: runnable again"
        pairs.append((job.task, "stays failed (superseded)" if job.superseded else "recover"))
        if len(found.rows) < rel.PREVIEW_ROWS:
            found.rows.append(
                rel.Row(
                    job.id,
                    job.task,
                    job.locked_by,
                    said,
                    rel.changes(job, plan, max(job.run_at, run_after)),
                    replaced.get(job.id),
                )
            )
    found.counts = rel.counts_by_task(pairs)
    if superseded:
        found.warnings.append(
            f"{plural_jobs(len(superseded))} superseded (the key was replaced while the worker "
            "was dead): the sweep only unlocks them and they stay failed, so the replacement is "
            "the only copy that runs."
        )


def plural_jobs(n: int) -> str:
    return f"{n:,} job is" if n == 1 else f"{n:,} jobs are"


# What finding the replacements may cost: no column of the rule is indexed, so at 10M jobs the
# read can take seconds. Past this the preview says "superseded" without naming the new job.
REPLACEMENT_BUDGET_MS = 100


def _replacements(cursor, q: str, superseded: list[rel.LockedJob]) -> dict[int, int]:
    """The job that took each superseded job's key, by recovery._REPLACEMENT's rule (created
    when the old one was superseded, keyed, newer; told only when exactly one matches), for all
    of them in one read (one correlated subquery per job was a scan of every job per job), only
    ids above the oldest of them, and within REPLACEMENT_BUDGET_MS: the replacement's id is a
    courtesy of the preview, and a dry run must not take seconds for it."""
    if not superseded:
        return {}
    try:
        with statement_budget(cursor.db.alias, REPLACEMENT_BUDGET_MS):
            cursor.execute(
                f"""
                SELECT w.id, min(r.id)
                  FROM unnest(%s::bigint[], %s::timestamptz[]) AS w(id, superseded_at)
                  JOIN {q}._private_jobs AS r
                    ON r.created_at = w.superseded_at AND r.key IS NOT NULL AND r.id > w.id
                 WHERE r.id > %s
                 GROUP BY w.id
                HAVING count(*) = 1
                """,
                [[j.id for j in superseded], [j.updated_at for j in superseded], superseded[0].id],
            )
            return dict(cursor.fetchall())
    except OperationalError as error:
        if cancelled(error):
            return {}
        raise


def _queue_rows(cursor, q: str, holders: list[str]):
    if not holders:
        return []
    cursor.execute(
        f"SELECT queue_name, locked_by, locked_at FROM {q}._private_job_queues "
        "WHERE locked_by = ANY(%s::text[]) ORDER BY queue_name",
        [holders],
    )
    return cursor.fetchall()
