"""The stale-worker sweep on exactly the jobs its dry run pinned, once.

    shown = preview(actor, threshold, delay, include_node)   # the dry run: pinned, rows, token
    result = apply(actor, shown.token, reason=..., via="web") # once; audited

The dry run decides who is dead by the rules of worker_admin/recovery.py (stale heartbeat,
three times the threshold for a worker holding an infrastructure_resilient job, orphan lock
holders, Node-looking holders left out unless included) in one pass over the locked jobs
(locked_by IS NOT NULL, which the opt-in index console_jobs_locked serves), instead of one
EXISTS per stale worker that scans every job. It pins the dead workers (with their last
heartbeat), their jobs and their queue locks. A superseded job (its key replaced while its
worker was dead) is pinned as "unlock only": it stays failed.

The apply takes the Rust sweepers' advisory lock as the sweep always did, claims the
confirmation, and releases only the pinned jobs still exactly as previewed: a worker that
heartbeated since the dry run is spared (its jobs skipped, its registration kept); a job
relocked, completed or deleted since is skipped and reported; a job the dead worker locked
after the dry run was never pinned and is not touched. The audit entry is written in the same
transaction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from worker_admin import audit
from worker_admin.cleanup import plural
from worker_admin.index_advice import LOCKED, guarded
from worker_admin.installer import quote_schema
from worker_admin.operations import claims, sweep_finding
from worker_admin.operations import releasing as rel
from worker_admin.operations.errors import Refused
from worker_admin.operations.sweep_finding import Found, find
from worker_admin.recovery import SWEEP_LOCK_KEY, _require_recovery, format_duration
from worker_admin.utils import WorkerUtils, WorkerUtilsError

KIND = "sweep"
LOOKUP_SECONDS = sweep_finding.LOOKUP_BUDGET_MS / 1000  # replacements(): past it, None
REASON_NEEDED = "Give a reason for the sweep; it goes in the audit log."
LOCK_BUSY = (
    "Another sweeper (a Rust worker or another console) holds the sweep lock right now: "
    "nothing was changed; try again shortly."
)


@dataclass(frozen=True)
class Preview:
    """The dry run: who is dead and why, who is left alone, the pinned jobs (first rows with
    before -> after), counts by task, warnings, and the token that applies exactly this."""

    token: str
    threshold: timedelta
    delay: timedelta
    include_node: bool
    reason: str
    now: datetime
    workers: list[tuple[str, str]]
    excluded: list[tuple[str, str]]
    job_ids: list[int]
    superseded_count: int
    rows: list[rel.Row]
    counts: list[tuple[str, str, int]]
    queue_names: list[str]
    warnings: list[str]
    replacements_pending: bool = False  # superseded rows shown whose replacement is not named

    @property
    def superseded_shown(self) -> list[int]:
        return [row.id for row in self.rows if row.superseded and row.replaced_by is None]

    @property
    def worker_ids(self) -> list[str]:
        return [worker for worker, _why in self.workers]

    @property
    def recover_count(self) -> int:
        return len(self.job_ids) - self.superseded_count

    @property
    def summary(self) -> str:
        """Future tense, as the button says it: "release 12 jobs of 3 workers; 2 superseded
        stay failed"."""
        text = (
            f"release {plural(len(self.job_ids), 'job')} of "
            f"{plural(len(self.workers), 'dead worker')}"
        )
        if self.superseded_count:
            text += f"; {self.superseded_count:,} superseded stay failed"
        if self.queue_names:
            text += f"; unlock {plural(len(self.queue_names), 'queue')}"
        if self.excluded:
            text += f"; {len(self.excluded):,} left alone"
        return text

    @property
    def restated(self) -> str:
        """The input, said back: threshold, delay, Node lock holders."""
        node = "included" if self.include_node else "left out"
        return (
            f"stale after {format_duration(self.threshold)} without a heartbeat; recovered jobs "
            f"run again no sooner than {format_duration(self.delay)} after the sweep; "
            f"Node lock holders {node}"
        )


@dataclass
class Result(rel.Released):
    worker_ids: list[str] = field(default_factory=list)  # deregistered or released
    spared_workers: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        text = self.changed_text() + f" of {plural(len(self.worker_ids), 'dead worker')}"
        recovered = len(self.changed_ids) - len(self.superseded_ids)
        text += f" ({recovered:,} recovered"
        if self.superseded_ids:
            text += f", {len(self.superseded_ids):,} superseded unlocked and left failed"
        text += ")"
        parts = [text, *self.tail()]
        if self.spared_workers:
            parts.append(f"{plural(len(self.spared_workers), 'worker')} spared")
        return "; ".join(parts)


def request_values(threshold: timedelta, delay: timedelta, include_node: bool) -> dict:
    """What the preview's outcome depends on (the reason is not: it can come at apply)."""
    for name, value, least in (("threshold", threshold, 1), ("delay", delay, 0)):
        if not isinstance(value, timedelta) or value.total_seconds() < least:
            raise Refused(
                f"The {name} must be a duration of {'more than zero' if least else 'zero or more'}."
            )
    if not isinstance(include_node, bool):
        raise Refused("include_node must be true or false.")
    return {
        "threshold_seconds": threshold.total_seconds(),
        "delay_seconds": delay.total_seconds(),
        "include_node": include_node,
    }


def request_digest(threshold: timedelta, delay: timedelta, include_node: bool) -> str:
    """The fingerprint a face sends back with the confirmation (the API's body)."""
    return claims.fingerprint(request_values(threshold, delay, include_node))


def preview(
    actor,
    threshold: timedelta = timedelta(minutes=5),
    delay: timedelta = timedelta(seconds=30),
    include_node: bool = False,
    reason: str = "",
    *,
    utils: WorkerUtils | None = None,
    index_budget: bool = False,
    name_replacements: bool = True,
) -> Preview:
    """The dry run (read-only, under the sweep lock): pin what the sweep will release.

    Without `name_replacements` (the web page, which asks `replacements()` once the page is
    shown) the rows of superseded jobs do not name the job that took the key.
    With `index_budget` (the web page and the API; not the command line, whose scripted sweeps
    may wait), the read of the locked jobs without console_jobs_locked on a large table has
    the index guard's budget (index_advice.py) and raises IndexNeeded past it."""
    rel.require_admin(actor)
    values = request_values(threshold, delay, include_node)
    reason = rel.clean_reason(reason)
    utils = utils or WorkerUtils()
    try:
        _require_recovery(utils.alias, utils.schema)
    except WorkerUtilsError as exc:
        raise Refused(str(exc)) from None
    q = quote_schema(utils.schema)
    needs = (LOCKED,) if index_budget else ()
    with (
        guarded(
            utils.alias, *needs, reading="the stale-worker sweep's dry run", schema=utils.schema
        ),
        transaction.atomic(using=utils.alias),
        connections[utils.alias].cursor() as cursor,
    ):
        if not _sweep_lock(cursor):
            raise Refused(LOCK_BUSY, status=409)
        found = find(cursor, q, threshold, delay, include_node, name_replacements)
    pinned = {
        "alias": utils.alias,
        "schema": utils.schema,
        "workers": found.pinned_workers,
        "jobs": found.pinned_jobs,
        "queues": found.pinned_queues,
    }
    request = values | {"reason": reason}
    token = claims.issue(KIND, actor, request, [pinned], claims.fingerprint(values))
    shown = _shown(token, threshold, delay, include_node, reason, found)
    return dataclasses.replace(shown, replacements_pending=bool(shown.superseded_shown))


def replacements(ids: list[int], *, utils: WorkerUtils | None = None) -> dict[int, int] | None:
    """Read-only: the job that took the key of each of these superseded jobs (those with
    exactly one candidate), or None when the lookup ran past its budget. For the dry run's
    page, which shows first and names the replacements of its first rows afterwards."""
    if len(ids) > rel.PREVIEW_ROWS:
        raise Refused(f"Ask for at most {rel.PREVIEW_ROWS} jobs at a time.")
    utils = utils or WorkerUtils()
    with transaction.atomic(using=utils.alias), connections[utils.alias].cursor() as cursor:
        q = quote_schema(utils.schema)
        return sweep_finding.replacements(cursor, q, ids, sweep_finding.LOOKUP_BUDGET_MS)


def _shown(token, threshold, delay, include_node, reason, found: Found) -> Preview:
    return Preview(
        token=token,
        threshold=threshold,
        delay=delay,
        include_node=include_node,
        reason=reason,
        now=found.now,
        workers=found.dead,
        excluded=found.excluded,
        job_ids=[pin[0] for pin in found.pinned_jobs],
        superseded_count=sum(1 for pin in found.pinned_jobs if pin[5] == rel.SUPERSEDED),
        rows=found.rows,
        counts=found.counts,
        queue_names=[pin[0] for pin in found.pinned_queues],
        warnings=found.warnings,
    )


def _sweep_lock(cursor) -> bool:
    cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", list(SWEEP_LOCK_KEY))
    return bool(cursor.fetchone()[0])


def apply(
    actor,
    confirmation: str,
    *,
    reason: str = "",
    via: str = "web",
    digest: str | None = None,
    reason_required: bool = True,
) -> Result:
    """Release what the dry run `confirmation` pinned, once (AlreadyUsed for a second apply).
    `reason` given here replaces the preview's; one of them is required unless the face says
    otherwise (the command line, whose scripted sweeps give none)."""
    rel.require_admin(actor)
    reason = rel.clean_reason(reason)
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        needed = REASON_NEEDED if reason_required else None
        row, reason = rel.claim_with_reason(confirmation, KIND, actor, digest, reason, needed)
        pinned = row.pinned[0]
        utils = WorkerUtils(pinned["alias"], pinned["schema"])
        q = quote_schema(utils.schema)
        result = Result()
        with (
            transaction.atomic(using=utils.alias),
            connections[utils.alias].cursor() as cursor,
        ):
            if not _sweep_lock(cursor):
                raise Refused(LOCK_BUSY, status=409)
            _release(cursor, q, pinned, row.request["delay_seconds"], result)
            with transaction.atomic(using=DEFAULT_DB_ALIAS):
                entry = _record(actor, via, reason, row, utils.schema, pinned, result)
        result.audit_entry_id = entry.pk
        claims.mark_used(row, {"first_entry": entry.pk, "summary": result.summary})
    return result


def _release(cursor, q: str, pinned: dict, delay_seconds: float, result: Result) -> None:
    spared = _spared(cursor, q, pinned["workers"])
    result.spared_workers = sorted(spared)
    result.spared_ids = [pin[0] for pin in pinned["jobs"] if pin[3] in spared]
    rel.release_jobs(cursor, q, pinned["jobs"], result, delay=timedelta(seconds=delay_seconds))
    result.queues_unlocked = rel.release_queues(cursor, q, pinned["queues"], spared)
    dead = [worker for worker, _beat in pinned["workers"] if worker not in spared]
    result.worker_ids = dead
    if dead:
        cursor.execute(f"SELECT {q}.delete_stale_workers(%s::text[])", [dead])


def _spared(cursor, q: str, workers: list[list]) -> set[str]:
    """Dead workers that are alive after all: a heartbeat since the dry run (or, for an orphan
    lock holder, a registration since)."""
    cursor.execute(
        f"SELECT id, last_heartbeat_at FROM {q}._private_workers WHERE id = ANY(%s::text[]) "
        "FOR UPDATE",
        [[worker for worker, _beat in workers]],
    )
    now = {worker: beat.isoformat() for worker, beat in cursor.fetchall()}
    return {
        worker
        for worker, beat in workers
        if worker in now and now[worker] != beat  # orphans were pinned with None
    }


def _record(actor, via, reason, row, schema, pinned, result: Result):
    return audit.record(
        actor=actor,
        via=via,
        action=KIND,
        outcome="done",
        worker_schema=schema,
        reason=reason,
        parameters={
            "threshold_seconds": row.request["threshold_seconds"],
            "delay_seconds": row.request["delay_seconds"],
            "include_node_lock_holders": row.request["include_node"],
            "worker_ids": result.worker_ids,
            "spared_workers": result.spared_workers,
            "superseded_ids": result.superseded_ids,
            "queues_unlocked": result.queues_unlocked,
            "confirmation": row.nonce,
        },
        requested_ids=[pin[0] for pin in pinned["jobs"]],
        changed_ids=result.changed_ids,
        skipped_ids=sorted(result.held_ids + result.stale_ids + result.spared_ids),
        missing_ids=result.gone_ids,
        summary=result.summary,
    )
