"""The apply of a job action: once, on exactly the pinned jobs, in audited chunks.

Each part is one transaction on the console's database holding the confirmation's row lock
(claims.py), with the worker's transaction inside it: the part locks its pinned jobs (FOR
UPDATE), skips those that are gone, changed since the preview (revision or updated_at moved) or
no longer match the filter, acts on the rest through WorkerUtils (which skips jobs a worker
holds), writes its audit entry and records the progress on the confirmation. A job that
started to match the filter after the preview was never pinned, so it is never touched.

With a time budget the apply stops between parts and `resume()` goes on from the progress on the
row; two resumes at once do successive parts, never one part twice.

Failures. A part that fails is rolled back whole and recorded as a "failed" entry, in the same
transaction as the claim when the console's connection survived. When the console's database is
the one that failed nothing can be recorded: the failure is logged and the exception goes on
(a 503 page). With CONSOLE_DATABASE_URL (two databases) a part's worker transaction commits
just before the console's, with no two-phase commit between them (docs/hardening.md).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from worker_admin import audit
from worker_admin.counting import bounded_count
from worker_admin.filters import apply_filters
from worker_admin.operations import claims
from worker_admin.operations.errors import Refused
from worker_admin.operations.job_actions.kinds import ActionKind
from worker_admin.operations.job_actions.pins import HELD, as_pinned, pinned_rows
from worker_admin.operations.job_actions.previewing import KIND, jobs
from worker_admin.operations.job_actions.request import ActionRequest, from_stored, options_for
from worker_admin.utils import JobActionResult, WorkerUtils

CHUNK = 1_000

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """Where an apply stands: totals so far, and how far through the pinned jobs it got."""

    batch: str = ""
    pinned: int = 0
    requested: int = 0
    changed: int = 0
    skipped: int = 0
    stale: int = 0
    missing: int = 0
    parts: int = 0
    position: int = 0
    done: bool = False
    entries: list[int] = field(default_factory=list)
    error: str = ""
    reason: str = ""
    first_entry: int | None = None
    left_alone: int = 0  # jobs that started to match the filter after the preview
    kind: str = ""
    job: int | None = None  # the one job of a single-job action, for the page to go back to
    filter: dict | None = None  # the filter a bulk action came from (query-string values)

    @property
    def summary(self) -> str:
        parts = [f"changed {self.changed:,} of {self.requested:,}"]
        if self.skipped:
            parts.append(f"{self.skipped:,} skipped: a worker holds them")
        if self.stale:
            parts.append(f"{self.stale:,} changed since the preview")
        if self.missing:
            parts.append(f"{self.missing:,} gone")
        if self.left_alone:
            parts.append(
                f"{self.left_alone:,} that started to match the filter after the preview left alone"
            )
        return "; ".join(parts)


@dataclass(frozen=True)
class PartResult:
    result: JobActionResult
    stale: tuple[int, ...]
    gone: tuple[int, ...]
    before: dict[int, dict]


def apply(
    actor,
    confirmation: str,
    *,
    reason: str = "",
    request: ActionRequest | None = None,
    via: str = "web",
    budget_seconds: float | None = None,
) -> Outcome:
    """Act on the preview `confirmation` names, once. `request`, when the face sends its values
    again, must be the one previewed (else Stale). Raises AlreadyUsed for a second apply."""
    digest = request.fingerprint() if request is not None else None
    return _run(actor, confirmation, via, budget_seconds, first=(reason, digest))


def resume(actor, confirmation: str, *, via: str = "web", budget_seconds: float | None = None):
    """The next parts of an apply that stopped at its time budget."""
    return _run(actor, confirmation, via, budget_seconds, first=None)


def _run(actor, confirmation, via, budget_seconds, first) -> Outcome:
    deadline = time.monotonic() + budget_seconds if budget_seconds is not None else None
    steps = 0
    while True:
        try:
            outcome = _part(actor, confirmation, via, first if steps == 0 else None)
        except Refused:
            raise
        except Exception as exc:  # the part rolled back, and its connection with it
            if getattr(exc, "part_committed", False):
                raise  # done but not audited (two databases): logged, not called "failed"
            return _failed_on_a_new_connection(actor, confirmation, via, exc, first)
        steps += 1
        if outcome.done or (deadline is not None and time.monotonic() >= deadline):
            return outcome


def _part(actor, confirmation: str, via: str, first) -> Outcome:
    """One part in one transaction: claim, act, audit, record the progress."""
    utils = WorkerUtils()
    worker_committed = False
    result = None
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            row = claims.claim(confirmation, KIND, actor, first[1] if first else None)
            if first is not None:
                claims.refuse_if_used(row)
                outcome = _fresh(confirmation, row, reason=first[0])
            elif row.used_at is None:
                raise Refused("This action has not started: confirm its preview first.")
            else:
                outcome = Outcome(**row.progress)
                if outcome.done:
                    raise Refused("This action already finished (see the audit log).")
            request = from_stored(row.request, outcome.reason)
            chunk = row.pinned[outcome.position : outcome.position + CHUNK]
            try:
                with (
                    transaction.atomic(using=utils.alias),
                    transaction.atomic(using=DEFAULT_DB_ALIAS),
                ):
                    result = _act(utils, request, chunk)
                    if not outcome.parts:  # ids asked for that did not exist at the preview
                        missing = tuple(row.request.get("missing") or ())
                        result = dataclasses.replace(result, gone=result.gone + missing)
                    entry = _audit(request, actor, via, result, outcome, confirmation)
            except Refused:
                raise
            except Exception as exc:
                if connections[DEFAULT_DB_ALIAS].needs_rollback:
                    raise  # the console's connection is broken: logged below
                _record_failure(request, actor, via, outcome, chunk, exc, confirmation)
                claims.mark_used(row, asdict(outcome))
                return outcome
            _count(outcome, result, len(chunk), entry.id)
            if outcome.done and request.target.filters is not None:
                outcome.left_alone = _left_alone(request, row.pinned)
            claims.mark_used(row, asdict(outcome))
            worker_committed = utils.alias != DEFAULT_DB_ALIAS
    except DatabaseError as exc:
        if worker_committed and result is not None:
            logger.error(
                "a job action part of %s changed jobs %s in the worker database, but its audit "
                "entry could not be committed: %s",
                confirmation[:16],
                list(result.result.changed_ids)[:50],
                audit.first_line(exc),
            )
        raise
    return outcome


def _fresh(confirmation: str, row, *, reason: str) -> Outcome:
    target = row.request["target"]
    ids = target.get("ids") or []
    return Outcome(
        batch=confirmation,
        pinned=len(row.pinned),
        reason=reason,
        kind=row.request["kind"],
        job=ids[0] if len(ids) == 1 else None,
        filter=target.get("filter"),
    )


def _failed_on_a_new_connection(actor, confirmation, via, exc: Exception, first) -> Outcome:
    """A part whose connection broke: it rolled back whole. Record that on a fresh connection
    and use the confirmation up; if even that fails (the console's database is down), log it and
    let the error reach the 503 page (the confirmation is then still unused)."""
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            row = claims.claim(confirmation, KIND, actor)
            if row.progress:
                outcome = Outcome(**row.progress)
            else:
                outcome = _fresh(confirmation, row, reason=first[0] if first else "")
            request = from_stored(row.request, outcome.reason)
            chunk = row.pinned[outcome.position : outcome.position + CHUNK]
            _record_failure(request, actor, via, outcome, chunk, exc, confirmation)
            claims.mark_used(row, asdict(outcome))
    except DatabaseError as audit_exc:
        logger.error(
            "a job action part of %s by %s failed and could not be audited (%s); it was rolled "
            "back, nothing in it changed. Error: %s",
            confirmation[:16],
            getattr(actor, "username", actor),
            audit.first_line(audit_exc),
            audit.first_line(exc),
        )
        raise audit_exc from exc
    return outcome


def _count(outcome: Outcome, part: PartResult, chunk_size: int, entry_id: int) -> None:
    outcome.parts += 1
    outcome.position += chunk_size
    outcome.requested += len(part.result.requested) + len(part.stale) + len(part.gone)
    outcome.changed += len(part.result.changed)
    outcome.skipped += len(part.result.skipped_locked)
    outcome.stale += len(part.stale)
    outcome.missing += len(part.gone) + len(part.result.missing)
    outcome.entries.append(entry_id)
    if outcome.first_entry is None:
        outcome.first_entry = entry_id
    outcome.done = outcome.position >= outcome.pinned


def _left_alone(request: ActionRequest, pinned: list[list]) -> int:
    """How many jobs match the filter now without having been pinned (never touched)."""
    matching = apply_filters(jobs(), request.target.filters)
    counted = bounded_count(
        matching.exclude(id__in=[p[0] for p in pinned]), bound=settings.BULK_ACTION_LIMIT
    )
    return counted.value or 0


def _act(utils: WorkerUtils, request: ActionRequest, chunk: list[list]) -> PartResult:
    """Lock the chunk's jobs, keep those still as previewed, act on them."""
    ids = [pinned[0] for pinned in chunk]
    as_previewed = {pinned[0]: pinned for pinned in chunk}
    rows = as_pinned(pinned_rows(jobs().filter(id__in=ids).select_for_update()))
    now = {row.id: row.pin for row in rows}
    locked = {row.id for row in rows if row.lock == HELD}
    matching = set(now)
    if request.target.filters is not None and now:
        matching = set(
            apply_filters(jobs().filter(id__in=list(now)), request.target.filters).values_list(
                "id", flat=True
            )
        )
    gone = tuple(i for i in ids if i not in now)
    # A job a worker took since the preview has changed (its attempts moved), but what stops
    # the action is the worker: it goes to the schema function, which skips it as held.
    stale = tuple(
        i
        for i in ids
        if i in now and i not in locked and (now[i] != as_previewed[i] or i not in matching)
    )
    eligible = [i for i in ids if i in now and i not in stale]
    before = _before_image(request.kind, eligible)
    result = _apply_kind(utils, request, eligible)
    return PartResult(result=result, stale=stale, gone=gone, before=before)


def _apply_kind(utils: WorkerUtils, request: ActionRequest, ids: list[int]) -> JobActionResult:
    if not ids:  # nothing left as previewed: the entry says so
        return JobActionResult(requested=(), changed=[], skipped_locked=(), missing=())
    if request.kind is ActionKind.REMOVE:
        return _remove_by_key(utils, ids)
    if request.kind is ActionKind.COMPLETE:
        return utils.complete_jobs(ids)
    if request.kind is ActionKind.FAIL:
        return utils.permanently_fail_jobs(ids, request.reason or None)
    return utils.reschedule_jobs(ids, options_for(request.kind, request.options))


def _remove_by_key(utils: WorkerUtils, ids: list[int]) -> JobActionResult:
    """remove_job works on keys: look the key up, then report like the id-based actions."""
    job = jobs().filter(id__in=ids).only("id", "key").first()
    if len(ids) != 1 or job is None or not job.key:
        raise Refused("Remove by key works on one job that has a key.")
    result = utils.remove_job(job.key)
    changed = [j for j in (result.removed, result.detached) if j is not None]
    return JobActionResult(
        requested=(job.id,),
        changed=changed,
        skipped_locked=(),
        missing=() if changed else (job.id,),
    )


def _before_image(kind: ActionKind, ids: list[int]) -> dict[int, dict]:
    """The rows as they are, read in the action's transaction: what an undo needs. Completing
    deletes the payload, so it is kept; the other actions keep the payload in place."""
    rows = jobs().filter(id__in=ids).select_related("task", "job_queue")
    keeps_payload = kind in (ActionKind.COMPLETE, ActionKind.REMOVE)
    if not keeps_payload:
        rows = rows.defer("payload")
    return {job.id: audit.job_image(job, with_payload=keeps_payload) for job in rows}


def _part_summary(part: PartResult, size: int) -> str:
    outcome = Outcome(
        requested=size,
        changed=len(part.result.changed),
        skipped=len(part.result.skipped_locked),
        stale=len(part.stale),
        missing=len(part.gone) + len(part.result.missing),
    )
    return outcome.summary


def _audit(request, actor, via, part: PartResult, outcome: Outcome, confirmation: str):
    result = part.result
    size = len(result.requested) + len(part.stale) + len(part.gone)
    parameters = request.parameters() | {
        "batch": confirmation[:16],
        "part": outcome.parts + 1,
        "changed_since_preview": list(part.stale),
        "gone": list(part.gone),
    }
    before = part.before
    return audit.record(
        actor=actor,
        via=via,
        action=request.kind.value,
        outcome="done",
        reason=request.reason,
        parameters=parameters,
        filter=request.target.describe().get("filter"),
        requested_ids=[*result.requested, *part.stale, *part.gone],
        changed_ids=result.changed_ids,
        skipped_ids=[*result.skipped_locked, *part.stale],
        missing_ids=[*result.missing, *part.gone],
        summary=_part_summary(part, size),
        before_image=[before[i] for i in result.changed_ids if i in before],
    )


def _record_failure(request, actor, via, outcome: Outcome, chunk, exc: Exception, confirmation):
    ids = [pinned[0] for pinned in chunk]
    error = audit.first_line(exc)[:500]
    failed = audit.record(
        actor=actor,
        via=via,
        action=request.kind.value,
        outcome="failed",
        reason=request.reason,
        parameters=request.parameters() | {"batch": confirmation[:16], "part": outcome.parts + 1},
        filter=request.target.describe().get("filter"),
        requested_ids=ids,
        error=error,
        summary=f"failed; nothing in this part changed ({len(ids):,} jobs)",
    )
    logger.warning("a job action part failed and was rolled back: %s", error)
    outcome.error = error
    outcome.parts += 1
    outcome.requested += len(ids)
    outcome.entries.append(failed.id)
    if outcome.first_entry is None:
        outcome.first_entry = failed.id
    outcome.done = True
