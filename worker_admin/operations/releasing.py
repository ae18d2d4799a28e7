"""Shared by the stale-worker sweep and force-unlock: pinning the locks dead workers hold,
showing what releasing them changes, and releasing exactly those, once.

A pinned job is [id, revision, updated_at, locked_by, locked_at, plan], both times in
microseconds since the epoch as PostgreSQL computes them (`job_actions.pins.micros`);
a pinned queue is [queue_name, locked_by, locked_at]. At apply the pinned jobs are locked
(FOR UPDATE) and compared with the pin: a job now held by another worker is skipped ("a worker
holds them"), one whose revision, updated_at or lock changed otherwise is skipped ("changed
since the preview"), one deleted meanwhile is "gone". Only the jobs still exactly as previewed
are released; a job the same worker locked after the preview was never pinned and is never
touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from worker_admin.cleanup import plural
from worker_admin.operations import claims
from worker_admin.operations.errors import Refused
from worker_admin.operations.job_actions.pins import micros
from worker_admin.roles import ADMIN, can_run_maintenance, refusal

PREVIEW_ROWS = 20  # as every other preview: the first rows, and counts by task for all
REASON_MAX = 2000
RECOVERED_ERROR = "Job recovered after worker interruption"
NONE = "(none)"

# What each plan sets. RECOVER is recover_dead_worker_jobs' update (the interrupted attempt
# given back, run_at at least the delay away), written here on the pinned ids only, because the
# schema function acts on every job a worker id holds, including one locked after the preview.
RECOVER, SUPERSEDED, UNLOCK = "recover", "superseded", "unlock"
SET_SQL = {
    RECOVER: "locked_at = NULL, locked_by = NULL, attempts = greatest(0, attempts - 1), "
    "run_at = greatest(run_at, now() + %(delay)s::interval), last_error = %(error)s, "
    "updated_at = now()",
    # Superseded (its key was replaced while its worker was dead): only unlocked; it keeps its
    # used-up attempts, so it stays failed and its replacement is the only copy that runs.
    SUPERSEDED: "locked_at = NULL, locked_by = NULL",
    UNLOCK: "locked_at = NULL, locked_by = NULL",
}


def utc_iso(moment: datetime | None) -> str:
    """2026-12-04T09:30:00Z: the console's format, in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else NONE


def require_admin(actor) -> None:
    """A signed-in user must hold the admin role (the command line's OS user is not checked:
    whoever runs it already holds the database's credentials)."""
    user = hasattr(actor, "has_perm") and getattr(actor, "pk", None)
    if user and not can_run_maintenance(actor):
        raise Refused(refusal(actor, needs=ADMIN, doing="running maintenance"), status=403)


def clean_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise Refused(f"The reason is longer than {REASON_MAX:,} characters.")
    if "\x00" in reason:  # PostgreSQL's text refuses it: a sentence, not a 500
        raise Refused("The reason must not contain NUL characters.")
    return reason


@dataclass(frozen=True)
class Change:
    column: str
    before: str
    after: str


@dataclass(frozen=True)
class Row:
    """One job as the preview shows it: who holds it, what happens, each column before -> after."""

    id: int
    task: str
    locked_by: str
    plan: str
    changes: tuple[Change, ...]
    replaced_by: int | None = None

    @property
    def superseded(self) -> bool:
        return self.plan.startswith("stays failed")


@dataclass(frozen=True)
class LockedJob:
    """A locked job as read at preview time (enough to pin it and to say what changes)."""

    id: int
    revision: int
    updated_at: datetime
    locked_by: str
    locked_at: datetime
    task: str
    attempts: int
    max_attempts: int
    run_at: datetime
    last_error: str
    superseded: bool = False


def changes(job: LockedJob, plan: str, run_at_after: datetime | None = None) -> tuple:
    """Before -> after of every column the plan sets, in the console's format."""
    shown = [
        Change("locked_by", job.locked_by, NONE),
        Change("locked_at", utc_iso(job.locked_at), NONE),
    ]
    if plan == RECOVER:
        if job.attempts > 0:
            shown.append(Change("attempts", str(job.attempts), str(job.attempts - 1)))
        if run_at_after is not None and run_at_after > job.run_at:
            shown.append(Change("run_at", utc_iso(job.run_at), utc_iso(run_at_after)))
        if job.last_error != RECOVERED_ERROR:
            shown.append(Change("last_error", job.last_error or NONE, RECOVERED_ERROR))
        shown.append(Change("updated_at", utc_iso(job.updated_at), "the time of the sweep"))
    return tuple(shown)


@dataclass
class Released:
    """What an apply did to its pinned jobs and queues."""

    pinned: int = 0
    changed_ids: list[int] = field(default_factory=list)
    held_ids: list[int] = field(default_factory=list)  # another worker holds them now
    stale_ids: list[int] = field(default_factory=list)  # changed otherwise since the preview
    gone_ids: list[int] = field(default_factory=list)
    spared_ids: list[int] = field(default_factory=list)  # their worker heartbeated since
    superseded_ids: list[int] = field(default_factory=list)
    queues_unlocked: list[str] = field(default_factory=list)
    audit_entry_id: int | None = None

    def tail(self) -> list[str]:
        """The skipped parts of the summary, each with its reason."""
        parts = []
        if self.held_ids:
            parts.append(f"{len(self.held_ids):,} skipped: a worker holds them")
        if self.spared_ids:
            parts.append(
                f"{len(self.spared_ids):,} skipped: their worker heartbeated since the preview"
            )
        if self.stale_ids:
            parts.append(f"{len(self.stale_ids):,} changed since the preview")
        if self.gone_ids:
            parts.append(f"{len(self.gone_ids):,} gone")
        return parts

    def changed_text(self) -> str:
        return f"changed {len(self.changed_ids):,} of {plural(self.pinned, 'job')}"


def release_jobs(cursor, q: str, pinned: list[list], result: Released, **values) -> None:
    """Release the pinned jobs still exactly as previewed, each by its plan; classify the rest.
    `values` fill SET_SQL (delay, error). Pins of spared workers are passed in result.spared_ids."""
    result.pinned = len(pinned)
    spared = set(result.spared_ids)
    wanted = [pin for pin in pinned if pin[0] not in spared]
    if not wanted:
        return
    cursor.execute(
        f"SELECT id, revision, {micros('updated_at')}, locked_by, {micros('locked_at')} "
        f"FROM {q}._private_jobs WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE",
        [[pin[0] for pin in wanted]],
    )
    now = {row[0]: row for row in cursor.fetchall()}
    by_plan: dict[str, list[int]] = {}
    for job_id, revision, updated_at, locked_by, locked_at, plan in wanted:
        if job_id not in now:
            result.gone_ids.append(job_id)
            continue
        _id, rev_now, updated_now, by_now, at_now = now[job_id]
        if by_now is not None and by_now != locked_by:
            result.held_ids.append(job_id)
        elif (rev_now, updated_now, by_now, at_now) != (
            revision,
            updated_at,
            locked_by,
            locked_at,
        ):
            result.stale_ids.append(job_id)
        else:
            by_plan.setdefault(plan, []).append(job_id)
    params = {"delay": values.get("delay"), "error": RECOVERED_ERROR}
    for plan, ids in by_plan.items():
        cursor.execute(
            f"UPDATE {q}._private_jobs SET {SET_SQL[plan]} WHERE id = ANY(%(ids)s::bigint[])",
            params | {"ids": ids},
        )
        result.changed_ids.extend(ids)
        if plan == SUPERSEDED:
            result.superseded_ids.extend(ids)
    result.changed_ids.sort()


def release_queues(cursor, q: str, pinned: list[list], spared: set[str]) -> list[str]:
    """Unlock the pinned queues still held by the same worker since the same moment."""
    names = [name for name, by, at in pinned if by not in spared]
    if not names:
        return []
    cursor.execute(
        f"SELECT queue_name, locked_by, locked_at FROM {q}._private_job_queues "
        "WHERE queue_name = ANY(%s::text[]) ORDER BY queue_name FOR UPDATE",
        [names],
    )
    as_pinned = {name: (by, at) for name, by, at in pinned}
    still = [
        name
        for name, by, at in cursor.fetchall()
        if by is not None and (by, at and at.isoformat()) == as_pinned[name]
    ]
    if still:
        cursor.execute(
            f"UPDATE {q}._private_job_queues SET locked_at = NULL, locked_by = NULL "
            "WHERE queue_name = ANY(%s::text[])",
            [still],
        )
    return still


def pin_queues(cursor, q: str, holders: list[str]) -> list[list]:
    if not holders:
        return []
    cursor.execute(
        f"SELECT queue_name, locked_by, locked_at FROM {q}._private_job_queues "
        "WHERE locked_by = ANY(%s::text[]) ORDER BY queue_name",
        [holders],
    )
    return [[name, by, at and at.isoformat()] for name, by, at in cursor.fetchall()]


def claim_with_reason(
    confirmation: str, kind: str, actor, digest: str | None, reason: str, needed: str | None
):
    """Claim an unused confirmation (inside the caller's transaction) and settle its reason:
    the one given at apply, else the preview's; `needed` is the refusal when both are empty
    (None where the face allows no reason). Returns (row, reason)."""
    row = claims.claim(confirmation, kind, actor, digest)
    claims.refuse_if_used(row)
    reason = reason or row.request.get("reason", "")
    if needed and not reason:
        raise Refused(needed)
    return row, reason


def digest(values: dict) -> str:
    return claims.fingerprint(values)
