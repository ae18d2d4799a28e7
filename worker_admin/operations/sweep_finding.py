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

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import OperationalError

from worker_admin.counting import cancelled, statement_budget
from worker_admin.operations import lock_pins
from worker_admin.operations import releasing as rel
from worker_admin.operations.job_actions.pins import micros
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


def find(
    cursor,
    q: str,
    threshold: timedelta,
    delay: timedelta,
    include_node: bool,
    name_replacements: bool = True,
) -> Found:
    """Who is dead, and the pins, rows and counts of what releasing them changes. Without
    `name_replacements` the rows do not name the job that replaced a superseded one (the web page
    looks them up after it is shown: see `replacements`)."""
    cursor.execute(f"SELECT now(), {micros('now()')}")
    now, now_us = cursor.fetchone()
    found = Found(now=now)
    pins = lock_pins.read(cursor, q, "j.locked_by IS NOT NULL", [], FLAGS)
    cursor.execute(
        f"SELECT locked_by, locked_at FROM {q}._private_job_queues WHERE locked_by IS NOT NULL"
    )
    queue_locks = cursor.fetchall()
    cursor.execute(f"SELECT id, last_heartbeat_at FROM {q}._private_workers ORDER BY id")
    registered = dict(cursor.fetchall())
    oldest, resilient = _holders(pins, now, now_us)
    _decide(found, threshold, include_node, registered, resilient, oldest, queue_locks)
    dead = {worker for worker, _why in found.dead}
    _pin_and_show(cursor, q, found, [pin for pin in pins if pin.locked_by in dead], delay)
    if name_replacements:
        _name_replacements(cursor, q, found)
    found.pinned_queues = [
        [name, by, at and at.isoformat()] for name, by, at in _queue_rows(cursor, q, sorted(dead))
    ]
    return found


def _holders(pins: list[lock_pins.LockPin], now: datetime, now_us: int):
    """Per lock holder: its oldest job lock (as a datetime) and whether it holds a flagged job."""
    oldest_us: dict[str, int] = {}
    resilient: dict[str, bool] = {}
    for pin in pins:
        if pin.locked_at_us is not None:  # locked_by set by hand without locked_at
            at = pin.locked_at_us
            oldest_us[pin.locked_by] = min(oldest_us.get(pin.locked_by, at), at)
        resilient[pin.locked_by] = resilient.get(pin.locked_by, False) or pin.flagged
    oldest = {holder: now - timedelta(microseconds=now_us - us) for holder, us in oldest_us.items()}
    return oldest, resilient


def _decide(found: Found, threshold, include_node, registered, resilient, oldest, queue_locks):
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
    oldest = {holder: at for holder, at in oldest.items() if holder not in registered}
    for holder, locked_at in queue_locks:
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


SUPERSEDED_SAID, RECOVER_SAID = "stays failed: superseded", "recover: runnable again"


def _pin_and_show(cursor, q, found: Found, pins: list[lock_pins.LockPin], delay: timedelta):
    """Pin every job of the dead workers; show the first PREVIEW_ROWS, count all by task."""
    plans = {pin.id: rel.SUPERSEDED if pin.superseded else rel.RECOVER for pin in pins}
    found.pinned_jobs = [pin.pin(plans[pin.id]) for pin in pins]
    run_after = found.now + delay
    for job in lock_pins.shown(cursor, q, [pin.id for pin in pins[: rel.PREVIEW_ROWS]]):
        plan = plans.get(job.id, rel.SUPERSEDED if job.superseded else rel.RECOVER)
        said = SUPERSEDED_SAID if plan == rel.SUPERSEDED else RECOVER_SAID
        changes = rel.changes(job, plan, max(job.run_at, run_after))
        found.rows.append(rel.Row(job.id, job.task, job.locked_by, said, changes))
    label = {rel.SUPERSEDED: "stays failed (superseded)", rel.RECOVER: "recover"}
    found.counts = lock_pins.counts(cursor, q, [(p.task_id, label[plans[p.id]]) for p in pins])
    superseded = sum(1 for plan in plans.values() if plan == rel.SUPERSEDED)
    if superseded:
        found.warnings.append(
            f"{plural_jobs(superseded)} superseded (the key was replaced while the worker "
            "was dead): the sweep only unlocks them and they stay failed, so the replacement is "
            "the only copy that runs."
        )


def _name_replacements(cursor, q: str, found: Found) -> None:
    """Name the replacing job in the shown rows of superseded jobs (within the budget)."""
    named = replacements(cursor, q, [row.id for row in found.rows if row.superseded]) or {}
    found.rows = [
        dataclasses.replace(
            row, plan=f"{SUPERSEDED_SAID} by job {named[row.id]}", replaced_by=named[row.id]
        )
        if row.id in named
        else row
        for row in found.rows
    ]


def plural_jobs(n: int) -> str:
    return f"{n:,} job is" if n == 1 else f"{n:,} jobs are"


# What finding the replacements may cost inside a dry run: no column of the rule is indexed, so
# at 10M jobs the read takes seconds. Past this the preview says "superseded" without naming the
# new job; the web page asks `replacements` afterwards with LOOKUP_BUDGET_MS.
REPLACEMENT_BUDGET_MS = 100
LOOKUP_BUDGET_MS = 3000


def replacements(
    cursor, q: str, ids: list[int], budget_ms: int = REPLACEMENT_BUDGET_MS
) -> dict[int, int] | None:
    """The job that took each superseded job's key (of `ids`, those still superseded), by
    recovery._REPLACEMENT's rule (created when the old one was superseded, keyed, newer; told
    only when exactly one matches), in one read over the ids above the oldest of them (one
    correlated subquery per job was a scan of every job per job), within `budget_ms`: None past
    it. The replacement's id is a courtesy of the preview, never worth seconds of a dry run."""
    if not ids:
        return {}
    try:
        with statement_budget(cursor.db.alias, budget_ms):
            cursor.execute(
                f"""
                WITH w AS MATERIALIZED (
                    SELECT j.id, j.updated_at AS superseded_at FROM {q}._private_jobs AS j
                     WHERE j.id = ANY(%s::bigint[]) AND {_SUPERSEDED})
                SELECT w.id, min(r.id)
                  FROM w JOIN {q}._private_jobs AS r
                    ON r.created_at = w.superseded_at AND r.key IS NOT NULL AND r.id > w.id
                 WHERE r.id > (SELECT min(id) FROM w)
                 GROUP BY w.id
                HAVING count(*) = 1
                """,
                [ids],
            )
            return dict(cursor.fetchall())
    except OperationalError as error:
        if cancelled(error):
            return None
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
