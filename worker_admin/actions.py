"""Job actions as the console offers them: a preview first, then the change, then the audit.

A target is either explicit ids (checked rows, or one job) or "every job matching this
filter". The preview says exactly what will happen; the confirmation carries a fingerprint of
what was previewed, so the change cannot differ from it, and a one-time nonce, so a double
submit acts once. Filter targets are re-read at execution time in chunks of ids, each chunk one
transaction with its own audit entry: a failure part-way leaves an honest record of what did
and did not change.

Acting once. The nonce in the session stops a confirmation sent again later, but two requests
sent at the same moment (a double click, a retried POST) both find it there. So each part of an
action also claims its place in the audit log, in the transaction that does it: under an
advisory lock on the action's batch (derived from the confirmation), it checks that no entry
records that part yet. The second request waits for the first to commit, finds its entry and
is refused with "already used" (ConfirmationUsed); a second "continue" of the same long action
catches up from the audit log instead of doing a part again. Single-step confirmations (the
sweep, force-unlock, cleanup) get the same guarantee from `acting_once`.

Failures. A part that fails is rolled back whole and recorded as a "failed" entry, under the
same lock when its connection survived, else on a fresh connection afterwards. When the
console's own database is the one that is down, no entry can be written: the failure is logged
(ERROR, with the batch, part and ids) and the exception goes on to the 503 page; the session is
not saved either, so the confirmation or the progress stays where the audit log says it is.
With CONSOLE_DATABASE_URL (two databases) a part's worker transaction commits just before its
audit entry's, with no two-phase commit between them: if the console's database fails in that
instant, the part is done but unaudited, and the log names its jobs (docs/hardening.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Now
from django.utils import timezone

from worker_admin import audit
from worker_admin.counting import bounded_count
from worker_admin.filters import JobFilters, apply_filters, parse_filters
from worker_admin.models import Job
from worker_admin.utils import (
    RUN_NOW,
    JobActionResult,
    RescheduleJobOptions,
    WorkerUtils,
)

CHUNK = 1_000
PREVIEW_ROWS = 20
MAX_EXPLICIT_IDS = 10_000
TOKEN_SALT = "worker_admin.actions.confirm"
TOKEN_MAX_AGE = 30 * 60  # seconds a preview stays valid
SESSION_KEY = "worker_admin_action_nonces"
# The advisory lock namespace for claiming a part of an action ("GCON"); the second key is the
# hash of the batch or confirmation.
CLAIM_LOCK_NAMESPACE = 1195593550
# How far back to look for an earlier use of a confirmation: it cannot be redeemed later than
# TOKEN_MAX_AGE after its preview, so twice that covers every use of it.
CLAIM_WINDOW = timedelta(seconds=2 * TOKEN_MAX_AGE)

logger = logging.getLogger(__name__)


class ActionKind(StrEnum):
    RUN_NOW = "run_now"
    RETRY = "retry"
    RESCHEDULE = "reschedule"
    COMPLETE = "complete"
    FAIL = "fail"
    REMOVE = "remove"


@dataclass(frozen=True)
class ActionInfo:
    label: str
    verb: str
    destructive: bool
    explanation: str


ACTIONS: dict[ActionKind, ActionInfo] = {
    ActionKind.RUN_NOW: ActionInfo(
        "Run now", "run", False, "Sets run_at to now, so the jobs are ready at once."
    ),
    ActionKind.RETRY: ActionInfo(
        "Retry",
        "retry",
        False,
        "Resets attempts to 0 and run_at to now: failed jobs get all their attempts back.",
    ),
    ActionKind.RESCHEDULE: ActionInfo(
        "Reschedule",
        "reschedule",
        False,
        "Replaces run_at, priority, attempts or max attempts; fields left empty stay as they are.",
    ),
    ActionKind.COMPLETE: ActionInfo(
        "Complete",
        "complete",
        True,
        "Deletes the jobs as if they had succeeded. Completed jobs leave no trace in the schema; "
        "the audit log keeps a copy of each deleted row.",
    ),
    ActionKind.REMOVE: ActionInfo(
        "Remove by key",
        "remove",
        True,
        "Calls remove_job with the job's key: an unlocked job is deleted; one a worker holds "
        "keeps running but loses its key and will not be retried.",
    ),
    ActionKind.FAIL: ActionInfo(
        "Permanently fail",
        "fail",
        True,
        "Uses up every attempt and records the reason as last_error: the jobs will not run again "
        "unless retried.",
    ),
}


class ActionRefused(ValueError):
    """The request cannot be previewed or confirmed; the text says why, for the user."""


class PreviewExpired(ActionRefused):
    pass


class ConfirmationUsed(ActionRefused):
    """Another request already acted on this confirmation (its audit entry says when)."""

    def __init__(self, entry) -> None:
        when = timezone.localtime(entry.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")
        super().__init__(
            f"This confirmation was already used: the action ran once, at {when} (audit entry "
            f"#{entry.pk}, {entry.outcome}). Nothing was done again."
        )
        self.entry = entry


@dataclass(frozen=True)
class Target:
    ids: tuple[int, ...] = ()
    filters: JobFilters | None = None

    @property
    def is_filter(self) -> bool:
        return self.filters is not None

    def describe(self) -> dict[str, Any]:
        if self.filters is not None:
            return {"filter": self.filters.query(cursor=None)}
        return {"ids": list(self.ids)}


@dataclass(frozen=True)
class ActionRequest:
    kind: ActionKind
    target: Target
    reason: str = ""
    options: RescheduleJobOptions | None = None

    def parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"action": self.kind.value}
        if self.options is not None:
            run_at = self.options.run_at
            params |= {
                "run_at": "now" if run_at is RUN_NOW else (run_at.isoformat() if run_at else None),
                "priority": self.options.priority,
                "attempts": self.options.attempts,
                "max_attempts": self.options.max_attempts,
            }
        return params

    def fingerprint(self) -> str:
        """What the preview showed: the action, its values and its target (the reason is
        written on the confirmation page, so it is not part of it)."""
        body = {"p": self.parameters(), "t": self.target.describe()}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Preview:
    request: ActionRequest
    count: int
    count_is_exact: bool
    rows: list[Job]
    locked: int
    old_locks: int
    missing: list[int]
    warnings: list[str] = field(default_factory=list)
    token: str = ""


def options_for(kind: ActionKind, options: RescheduleJobOptions | None) -> RescheduleJobOptions:
    if kind is ActionKind.RUN_NOW:
        return RescheduleJobOptions(run_at=RUN_NOW)
    if kind is ActionKind.RETRY:
        return RescheduleJobOptions(run_at=RUN_NOW, attempts=0)
    if options is None:
        raise ActionRefused("Say what to change: run at, priority, attempts or max attempts.")
    return options


def _jobs():
    return Job.objects.using(settings.WORKER_DATABASE)


def target_queryset(target: Target):
    if target.filters is not None:
        return apply_filters(_jobs(), target.filters)
    return _jobs().filter(id__in=target.ids)


def _limit() -> int:
    return settings.BULK_ACTION_LIMIT


def build_preview(request: ActionRequest, session) -> Preview:
    """Read what the action would touch, without changing anything, and issue a token."""
    jobs = target_queryset(request.target)
    young_lock = Q(locked_at__isnull=False) & Q(locked_at__gte=_four_hours_ago())
    if request.target.is_filter:
        counted = bounded_count(jobs, bound=_limit())
        if counted.kind != "exact":
            raise ActionRefused(
                f"More than {_limit():,} jobs match this filter, the most one bulk action may "
                "change. Narrow the filter, or raise BULK_ACTION_LIMIT."
            )
        count, missing = counted.value, []
    else:
        found = set(jobs.values_list("id", flat=True))
        missing = [i for i in request.target.ids if i not in found]
        count = len(found)
        if not count:
            raise ActionRefused(
                "None of the chosen jobs exists (completed jobs are deleted): nothing to do."
            )
        if request.kind is ActionKind.REMOVE and not jobs.filter(key__isnull=False).exists():
            raise ActionRefused("Remove by key works on one job that has a key.")
    locked = jobs.filter(young_lock).count()
    old_locks = jobs.filter(locked_at__lt=_four_hours_ago()).count()
    rows = list(jobs.with_state().select_related("task", "job_queue").order_by("id")[:PREVIEW_ROWS])
    preview = Preview(request, count, True, rows, locked, old_locks, missing)
    preview.warnings = _warnings(preview, jobs)
    preview.token = issue_token(request.fingerprint(), session)
    return preview


def _four_hours_ago():
    return ExpressionWrapper(Now() - Value(timedelta(hours=4)), output_field=DateTimeField())


def _jobs_word(n: int) -> str:
    return f"{n:,} job" if n == 1 else f"{n:,} jobs"


def _warnings(preview: Preview, jobs) -> list[str]:
    kind, n = preview.request.kind, preview.count - preview.locked
    warnings = []
    if preview.locked:
        warnings.append(
            f"{preview.locked:,} of these jobs are held by a worker (locked less than 4 hours "
            "ago) and will be skipped."
        )
    if preview.old_locks:
        warnings.append(
            f"{preview.old_locks:,} have locks older than 4 hours: they will be changed although "
            "a worker may still be running them, and they keep showing as locked."
        )
    if kind is ActionKind.COMPLETE and n:
        warnings.append(
            f"This deletes {_jobs_word(n)} and their payloads; completed jobs leave no trace "
            "(the audit log keeps a copy)."
        )
    if kind is ActionKind.FAIL and n:
        warnings.append(f"{_jobs_word(n)} will not run again unless someone retries them.")
    if kind is ActionKind.RETRY:
        not_failed = jobs.exclude(attempts__gte=F("max_attempts")).count()
        if not_failed:
            warnings.append(
                f"{not_failed:,} of these jobs have not failed; retry resets their attempts too."
            )
    if preview.missing:
        warnings.append(
            f"{len(preview.missing):,} of the ids do not exist (completed jobs are deleted)."
        )
    return warnings


def issue_token(fingerprint: str, session) -> str:
    """A signed confirmation for what a preview showed, usable once (its nonce is in the
    session until redeemed)."""
    nonce = secrets.token_hex(8)
    pending = session.get(SESSION_KEY, [])[-50:]  # a few open previews per user, not unbounded
    session[SESSION_KEY] = [*pending, nonce]
    return signing.dumps({"f": fingerprint, "n": nonce}, salt=TOKEN_SALT)


def redeem_token(token: str, fingerprint: str, session) -> str:
    """Check the confirmation matches its preview and has not been used; use it up.

    Returns its nonce: pass it to `execute(confirmation=...)` or `acting_once`, which make the
    "once" hold for requests that arrive together too."""
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise PreviewExpired("This preview is more than 30 minutes old: preview again.") from None
    except signing.BadSignature:
        raise ActionRefused("This confirmation is not valid: preview the action again.") from None
    if data.get("f") != fingerprint:
        raise ActionRefused(
            "The action differs from what was previewed (a value was changed): preview again."
        )
    pending = session.get(SESSION_KEY, [])
    if data.get("n") not in pending:
        raise ActionRefused("This confirmation was already used: the action ran once.")
    session[SESSION_KEY] = [n for n in pending if n != data["n"]]
    return data["n"]


@dataclass
class Outcome:
    """Where a (possibly long) action stands: totals so far and where to resume.

    `position` is how far the chunks got: the index into the ids for explicit targets, the last
    id handled for filter targets (which are re-read from there on).
    """

    batch: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    requested: int = 0
    changed: int = 0
    skipped: int = 0
    missing: int = 0
    parts: int = 0
    position: int = 0
    done: bool = False
    entries: list[int] = field(default_factory=list)
    error: str = ""

    @property
    def summary(self) -> str:
        parts = [f"changed {self.changed:,} of {self.requested:,}"]
        if self.skipped:
            parts.append(f"{self.skipped:,} skipped because a worker holds them")
        if self.missing:
            parts.append(f"{self.missing:,} not found")
        return "; ".join(parts)


def execute(
    request: ActionRequest,
    *,
    actor,
    via: str = "web",
    outcome: Outcome | None = None,
    budget_seconds: float | None = None,
    confirmation: str | None = None,
) -> Outcome:
    """Do the action chunk by chunk; every chunk is one transaction with its own audit entry.

    With a time budget it stops between chunks once the budget is spent and returns an
    unfinished Outcome; calling again with that Outcome resumes where it stopped (the console
    shows progress that way instead of holding one request open for minutes).

    `confirmation` (the nonce redeem_token returned) names the batch, so that a second request
    with the same confirmation raises ConfirmationUsed instead of acting again. An action that
    finds nothing left to change still gets its "done" entry.
    """
    utils = WorkerUtils()
    fresh = outcome is None
    if outcome is None:
        outcome = Outcome(batch=_batch_for(confirmation)) if confirmation else Outcome()
    deadline = time.monotonic() + budget_seconds if budget_seconds is not None else None
    steps = 0
    while True:
        chunk = _next_chunk(request.target, outcome)
        if chunk is None and outcome.parts:
            break
        # Stop between chunks once the budget is spent, but only when there is more to do.
        if steps and deadline is not None and time.monotonic() > deadline:
            return outcome
        steps += 1
        ids, position = chunk if chunk is not None else ([], outcome.position)
        try:
            status = _run_part(utils, request, actor, via, outcome, ids, position, fresh=fresh)
        except ConfirmationUsed:
            raise
        except Exception as exc:  # the part rolled back, and its connection with it
            if getattr(exc, "part_committed", False):
                raise  # done but not audited (two databases): logged, not called "failed"
            _record_failure(request, actor, via, outcome, ids, exc, part=outcome.parts + 1)
            outcome.done = True
            return outcome
        if status == "failed" or outcome.done:
            outcome.done = True
            return outcome
        if chunk is None:
            break
    outcome.done = True
    return outcome


def _batch_for(confirmation: str) -> str:
    return hashlib.sha256(f"batch:{confirmation}".encode()).hexdigest()[:16]


def _lock(key: str) -> None:
    """Until this transaction ends, requests claiming the same key wait for each other."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [CLAIM_LOCK_NAMESPACE, key]
        )


def _batch_entries(request: ActionRequest, outcome: Outcome):
    entries = audit.AuditEntry.objects.filter(
        action=request.kind.value, parameters__batch=outcome.batch
    )
    if outcome.entries:  # the batch's entries come after its first one
        return entries.filter(pk__gte=min(outcome.entries))
    return entries.filter(created_at__gte=timezone.now() - CLAIM_WINDOW)


def _run_part(utils, request, actor, via, outcome: Outcome, ids, position, *, fresh) -> str:
    """One part in one transaction: claim it, do it, audit it. Returns "done", "failed" (the
    failure recorded under the claim) or "resynced" (another request had done this part: the
    outcome now says what the audit log says)."""
    worker_committed = False
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            _lock(outcome.batch)
            recorded = list(
                _batch_entries(request, outcome)
                .filter(parameters__part__gt=outcome.parts)
                .order_by("pk")[:1]
            )
            if recorded:
                if fresh and not outcome.parts:
                    raise ConfirmationUsed(recorded[0])
                _resync(request, outcome)
                return "resynced"
            try:
                with (
                    transaction.atomic(using=utils.alias),
                    transaction.atomic(using=DEFAULT_DB_ALIAS),
                ):
                    before = _before_image(request.kind, ids)
                    result = _apply(utils, request, ids)
                    entry = _audit(request, actor, via, result, outcome, before, outcome.parts + 1)
            except Exception as exc:
                if connections[DEFAULT_DB_ALIAS].needs_rollback:
                    raise  # the console's connection is broken: recorded after the rollback
                _record_failure(request, actor, via, outcome, ids, exc, part=outcome.parts + 1)
                return "failed"
            # With two databases (CONSOLE_DATABASE_URL) the worker's transaction has committed
            # here, just before the console's: there is no two-phase commit between them.
            worker_committed = utils.alias != DEFAULT_DB_ALIAS
    except DatabaseError as exc:
        if worker_committed:
            logger.error(
                "%s part %s of batch %s changed jobs %s in the worker database, but its audit "
                "entry could not be committed: %s",
                request.kind.value,
                outcome.parts + 1,
                outcome.batch,
                list(result.changed_ids)[:50],
                _describe(exc),
            )
            exc.part_committed = True
        raise
    outcome.parts += 1
    outcome.requested += len(result.requested)
    outcome.changed += len(result.changed)
    outcome.skipped += len(result.skipped_locked)
    outcome.missing += len(result.missing)
    outcome.entries.append(entry.id)
    outcome.position = position
    return "done"


def _resync(request: ActionRequest, outcome: Outcome) -> None:
    """Totals and position from the batch's audit entries: the truth when another request (a
    second "continue", or a step whose answer never arrived) did parts this one did not see."""
    entries = list(_batch_entries(request, outcome).order_by("pk"))
    outcome.parts = max(int(e.parameters.get("part", 0)) for e in entries)
    outcome.requested = sum(len(e.requested_ids) for e in entries)
    outcome.changed = sum(len(e.changed_ids) for e in entries)
    outcome.skipped = sum(len(e.skipped_ids) for e in entries)
    outcome.missing = sum(len(e.missing_ids) for e in entries)
    outcome.entries = [e.pk for e in entries]
    if request.target.is_filter:
        outcome.position = max((i for e in entries for i in e.requested_ids), default=0)
    else:
        outcome.position = outcome.parts * CHUNK
    failed = [e for e in entries if e.outcome == audit.AuditEntry.Outcome.FAILED]
    if failed:
        outcome.error, outcome.done = failed[-1].error, True


def _record_failure(
    request, actor, via, outcome: Outcome, ids: list[int], exc: Exception, *, part: int
):
    """A "failed" entry for a part that rolled back. If even that cannot be written (the
    console's database is down), say so in the log and let the error reach the 503 page."""
    error = _describe(exc)
    try:
        failed = audit.record(
            actor=actor,
            via=via,
            action=request.kind.value,
            outcome="failed",
            reason=request.reason,
            parameters=request.parameters() | {"batch": outcome.batch, "part": part},
            filter=request.target.describe().get("filter"),
            requested_ids=ids,
            error=error,
            summary=f"failed; nothing in this part changed ({len(ids):,} jobs)",
        )
    except DatabaseError as audit_exc:
        logger.error(
            "%s part %s of batch %s by %s failed and could not be audited (%s); it was rolled "
            "back, nothing in it changed. Ids: %s. Error: %s",
            request.kind.value,
            part,
            outcome.batch,
            getattr(actor, "username", actor),
            _describe(audit_exc),
            ids[:50] if len(ids) <= 50 else f"{len(ids):,} ids from {ids[0]} to {ids[-1]}",
            error,
        )
        raise audit_exc from exc
    logger.warning(
        "%s part %s of batch %s failed and was rolled back: %s",
        request.kind.value,
        part,
        outcome.batch,
        error,
    )
    outcome.error = error
    outcome.parts = part
    outcome.entries.append(failed.id)
    outcome.requested += len(ids)


@contextmanager
def acting_once(
    confirmation: str, *, actor, via: str, action: str, parameters: dict | None = None
) -> Iterator[None]:
    """One transaction (on the console's database) for a single-step confirmed action: the
    caller does the work and writes its audit entry inside, with parameters["confirmation"] set
    to `confirmation`. Of two requests with the same confirmation one acts; the other waits for
    it and gets ConfirmationUsed. A database failure inside is recorded as a "failed" entry
    (or logged, when the console's database is the one that failed)."""
    try:
        with transaction.atomic(using=DEFAULT_DB_ALIAS):
            _lock(confirmation)
            earlier = (
                audit.AuditEntry.objects.filter(
                    action=action,
                    created_at__gte=timezone.now() - CLAIM_WINDOW,
                    parameters__confirmation=confirmation,
                )
                .order_by("pk")
                .first()
            )
            if earlier is not None:
                raise ConfirmationUsed(earlier)
            yield
    except DatabaseError as exc:
        try:
            audit.record(
                actor=actor,
                via=via,
                action=action,
                outcome="failed",
                parameters=(parameters or {}) | {"confirmation": confirmation},
                error=_describe(exc),
                summary="failed; rolled back, nothing changed",
            )
        except DatabaseError as audit_exc:
            logger.error(
                "%s by %s failed and could not be audited (%s); it was rolled back. Error: %s",
                action,
                getattr(actor, "username", actor),
                _describe(audit_exc),
                _describe(exc),
            )
        raise


def _describe(exc: Exception) -> str:
    return audit.first_line(exc)[:500]


def _next_chunk(target: Target, outcome: Outcome) -> tuple[list[int], int] | None:
    """The next (ids, position after them), from where the outcome stands; None when done."""
    if not target.is_filter:
        start = outcome.position
        if start >= len(target.ids):
            return None
        return list(target.ids[start : start + CHUNK]), start + CHUNK
    # Re-read the filter now: jobs may have completed or changed since the preview.
    room = _limit() - outcome.requested
    if room <= 0:
        return None
    ids = list(
        target_queryset(target)
        .filter(id__gt=outcome.position)
        .order_by("id")
        .values_list("id", flat=True)[: min(CHUNK, room)]
    )
    return (ids, ids[-1]) if ids else None


def _apply(utils: WorkerUtils, request: ActionRequest, ids: list[int]) -> JobActionResult:
    if not ids:  # nothing matched any more: the entry says so
        return JobActionResult(requested=(), changed=(), skipped_locked=(), missing=())
    if request.kind is ActionKind.REMOVE:
        return _remove_by_key(utils, ids)
    if request.kind is ActionKind.COMPLETE:
        return utils.complete_jobs(ids)
    if request.kind is ActionKind.FAIL:
        return utils.permanently_fail_jobs(ids, request.reason or None)
    return utils.reschedule_jobs(ids, options_for(request.kind, request.options))


def _remove_by_key(utils: WorkerUtils, ids: list[int]) -> JobActionResult:
    """remove_job works on keys: look the key up, then report like the id-based actions."""
    job = _jobs().filter(id__in=ids).only("id", "key").first()
    if len(ids) != 1 or job is None or not job.key:
        raise ActionRefused("Remove by key works on one job that has a key.")
    result = utils.remove_job(job.key)
    changed = [j for j in (result.removed, result.detached) if j is not None]
    return JobActionResult(
        requested=(job.id,),
        changed=changed,
        skipped_locked=(),
        missing=() if changed else (job.id,),
    )


def _before_image(kind: ActionKind, ids: list[int]) -> dict[int, dict]:
    """The rows as they are, read in the action's transaction: what an undo needs.

    Completing deletes the payload, so it is kept; the other actions keep the payload in place.
    """
    jobs = _jobs().filter(id__in=ids).select_related("task", "job_queue")
    keeps_payload = kind in (ActionKind.COMPLETE, ActionKind.REMOVE)
    if not keeps_payload:
        jobs = jobs.defer("payload")
    images = {}
    for job in jobs:
        image = audit.job_image(job, with_payload=keeps_payload)
        images[job.id] = image
    return images


def _audit(request, actor, via, result: JobActionResult, outcome: Outcome, before: dict, part: int):
    return audit.record(
        actor=actor,
        via=via,
        action=request.kind.value,
        outcome="done",
        reason=request.reason,
        parameters=request.parameters() | {"batch": outcome.batch, "part": part},
        filter=request.target.describe().get("filter"),
        requested_ids=result.requested,
        changed_ids=result.changed_ids,
        skipped_ids=result.skipped_locked,
        missing_ids=result.missing,
        summary=result.summary,
        before_image=[before[i] for i in result.changed_ids if i in before],
    )


def record_rejection(*, actor, via: str, action: str, error: str, data: dict) -> None:
    """Bad input changes nothing, but the attempt is part of the record."""
    audit.record(
        actor=actor,
        via=via,
        action=_storable(action) or "unknown",
        outcome="rejected",
        parameters={_storable(k): _storable(v, 500) for k, v in data.items()},
        error=_storable(error, 2000),
        summary="rejected; nothing changed",
    )


def _storable(value: Any, limit: int | None = None) -> Any:
    """What the audit log can keep of rejected input: PostgreSQL's text and jsonb refuse NUL
    characters (a stand-in shows where one was), and long values are clipped."""
    if not isinstance(value, str):
        if limit is None or len(str(value)) < limit:
            return value
        value = str(value)
    value = value.replace("\x00", "\ufffd")
    return value if limit is None or len(value) < limit else value[:limit] + "…"


# -- resumable state, kept in the session between progress steps ------------------------------

PROGRESS_KEY = "worker_admin_action_progress"


def save_progress(session, request: ActionRequest, outcome: Outcome) -> None:
    options = request.parameters()
    state = {
        "kind": request.kind.value,
        "ids": list(request.target.ids),
        "filter": request.target.describe().get("filter"),
        "reason": request.reason,
        "options": options if request.options is not None else None,
        "outcome": {k: v for k, v in outcome.__dict__.items()},
    }
    progress = session.get(PROGRESS_KEY, {})
    progress[outcome.batch] = state
    session[PROGRESS_KEY] = dict(list(progress.items())[-5:])


def load_progress(session, batch: str) -> tuple[ActionRequest, Outcome]:
    state = session.get(PROGRESS_KEY, {}).get(batch)
    if state is None:
        raise ActionRefused("This action already finished (or its progress has expired).")
    options = None
    if state["options"] is not None:
        raw = state["options"]
        run_at = raw.get("run_at")
        options = RescheduleJobOptions(
            run_at=RUN_NOW if run_at == "now" else (_parse_time(run_at) if run_at else None),
            priority=raw.get("priority"),
            attempts=raw.get("attempts"),
            max_attempts=raw.get("max_attempts"),
        )
    filters = parse_filters(state["filter"]) if state["filter"] is not None else None
    target = Target(ids=tuple(state["ids"]), filters=filters)
    request = ActionRequest(ActionKind(state["kind"]), target, state["reason"], options)
    return request, Outcome(**state["outcome"])


def forget_progress(session, batch: str) -> None:
    progress = session.get(PROGRESS_KEY, {})
    progress.pop(batch, None)
    session[PROGRESS_KEY] = progress


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)
