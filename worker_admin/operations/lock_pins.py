"""The locks a sweep or a force-unlock pins, read as PostgreSQL computes them.

A pin is [id, revision, updated_at in µs since the epoch, locked_by, locked_at in µs, plan]:
the preview reads it with `read()` and the apply with releasing.release_jobs, through the same
`job_actions.pins.micros`, so both
sides compute it the same way and compare plain integers and text. Nothing here turns a
timestamp into a Python datetime: a sweep of dead workers that held 10,000 jobs pins them all,
and parsing their timestamps, hashing them and rendering a row for each cost most of the dry
run at 10M jobs. The rows a preview shows (the first PREVIEW_ROWS) are read in full by
`shown()`; the rest are counted by task.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from worker_admin.operations import releasing as rel
from worker_admin.operations.job_actions.pins import micros
from worker_admin.recovery import _SUPERSEDED


class LockPin(NamedTuple):
    """A locked job as pinned, with what deciding and counting need (task, superseded, flag)."""

    id: int
    revision: int
    updated_us: int
    locked_by: str
    locked_at_us: int | None  # None only where locked_by was set by hand without locked_at
    task_id: int
    superseded: bool
    flagged: bool  # holds a job with one of the flags asked for (infrastructure_resilient)

    def pin(self, plan: str) -> list:
        return [self.id, self.revision, self.updated_us, self.locked_by, self.locked_at_us, plan]


def read(cursor, q: str, where: str, params: list, flags: list[str]) -> list[LockPin]:
    """The locked jobs `where` selects (alias j), by id."""
    cursor.execute(
        f"""
        SELECT j.id, j.revision, {micros("j.updated_at")},
               j.locked_by, {micros("j.locked_at")}, j.task_id,
               {_SUPERSEDED}, coalesce(j.flags ?| %s::text[], false)
          FROM {q}._private_jobs AS j
         WHERE {where}
         ORDER BY j.id
        """,
        [flags, *params],
    )
    return [LockPin(*row) for row in cursor.fetchall()]


def shown(cursor, q: str, ids: list[int]) -> list[rel.LockedJob]:
    """The jobs a preview shows, read in full (task, attempts, run_at, the error's first line)."""
    if not ids:
        return []
    cursor.execute(
        f"""
        SELECT j.id, j.revision, j.updated_at, j.locked_by, j.locked_at, t.identifier,
               j.attempts, j.max_attempts, j.run_at,
               left(split_part(coalesce(j.last_error, ''), E'\\n', 1), 200), {_SUPERSEDED}
          FROM {q}._private_jobs AS j JOIN {q}._private_tasks AS t ON t.id = j.task_id
         WHERE j.id = ANY(%s::bigint[])
         ORDER BY j.id
        """,
        [ids],
    )
    return [rel.LockedJob(*values, superseded=s) for *values, s in cursor.fetchall()]


def counts(cursor, q: str, planned: list[tuple[int, str]]) -> list[tuple[str, str, int]]:
    """(task identifier, what happens, count), largest first, from (task_id, plan) pairs."""
    tally = Counter(planned)
    cursor.execute(
        f"SELECT id, identifier FROM {q}._private_tasks WHERE id = ANY(%s::int[])",
        [sorted({task_id for task_id, _plan in tally})],
    )
    names = dict(cursor.fetchall())
    return [(names.get(task_id, "?"), plan, n) for (task_id, plan), n in tally.most_common()]
