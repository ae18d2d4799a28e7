"""The preview of a job action: the jobs it will touch, pinned with each row's revision and
updated_at, what it will change in the first rows (before -> after), and the warnings.

The pinned list is what the apply works through (apply.py): it never touches a job that was
not in it, and skips one whose revision or updated_at moved since."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from worker_admin import databases
from worker_admin.counting import bounded_count
from worker_admin.filters import apply_filters
from worker_admin.index_advice import filter_needs, guarded
from worker_admin.models import Job, Task
from worker_admin.operations import claims
from worker_admin.operations.errors import NotFound, Refused
from worker_admin.operations.job_actions.kinds import ActionKind
from worker_admin.operations.job_actions.pins import HELD, OLD, PinnedRow, as_pinned, pinned_rows
from worker_admin.operations.job_actions.request import ActionRequest
from worker_admin.stats import database_now
from worker_admin.utils import RUN_NOW

KIND = "job_action"
PREVIEW_ROWS = 20
BY_TASK_STATE_ROWS = 20


@dataclass(frozen=True)
class Change:
    column: str
    before: Any
    after: Any

    @property
    def before_text(self) -> str:
        return shown(self.before)

    @property
    def after_text(self) -> str:
        return "deleted" if self.column == "row" else shown(self.after)


def shown(value: Any) -> str:
    """A value as the preview shows it: times in ISO 8601, UTC, to the second."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


@dataclass
class Preview:
    request: ActionRequest
    count: int
    rows: list[Job]
    locked: int
    old_locks: int
    missing: list[int]
    pinned: list[list] = field(default_factory=list)
    changes: dict[int, list[Change]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    token: str = ""
    count_is_exact: bool = True
    by_task_state: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def filter_text(self) -> str:
        """The filter the jobs were chosen by, restated ("" for ticked ids)."""
        filters = self.request.target.filters
        if filters is None:
            return ""
        query = filters.query(cursor=None)
        return "; ".join(f"{name} = {value}" for name, value in sorted(query.items())) or "all jobs"

    @property
    def will_change(self) -> int:
        return self.count - self.locked

    @property
    def fingerprint(self) -> str:
        return claims.fingerprint({"request": self.request.stored(), "pinned": self.pinned})


def jobs():
    return Job.objects.using(databases.current().alias)


def target_queryset(request: ActionRequest):
    if request.target.filters is not None:
        return apply_filters(jobs(), request.target.filters)
    return jobs().filter(id__in=request.target.ids)


def _pinned_rows(request: ActionRequest) -> list[PinnedRow]:
    limit = settings.BULK_ACTION_LIMIT
    targets = target_queryset(request)
    # Over the limit is told by ids alone first (an index-only walk, ~2 ms for a task with
    # millions of jobs), before the pins read every row (~300 ms for such a task at 10M).
    if bounded_count(targets, bound=limit).kind == "at_least":
        _refuse_over(limit)
    rows = as_pinned(pinned_rows(targets.order_by("id"))[: limit + 1])
    if len(rows) > limit:  # more matched between the two reads
        _refuse_over(limit)
    return rows


def _refuse_over(limit: int) -> None:
    raise Refused(
        f"More than {limit:,} jobs match this filter, the most one bulk action may change. "
        "Narrow the filter, or raise BULK_ACTION_LIMIT."
    )


def preview(actor, request: ActionRequest, *, index_budget: bool = False) -> Preview:
    """Read what the action would touch, pin it, and store it as a confirmation; changes
    nothing in the worker schema.

    With `index_budget` (the web page and the API; not the command line, which may wait), a
    filter that an absent opt-in index would serve is read under the index guard
    (index_advice.py): IndexNeeded past its budget. The confirmation is issued after it."""
    needs = ()
    if index_budget and request.target.filters is not None:
        filters = request.target.filters
        needs = filter_needs(filters.values, filters.state)
    with guarded(databases.current().alias, *needs, reading="the jobs this action would change"):
        result = _read(request)
    stored = request.stored() | {"missing": result.missing}  # reported as gone by the apply
    result.token = claims.issue(KIND, actor, stored, result.pinned, request.fingerprint())
    return result


def _read(request: ActionRequest) -> Preview:
    """The preview's reads: the pinned rows, the first ones shown with their changes."""
    rows = _pinned_rows(request)
    ids = [row[0] for row in rows]
    missing = (
        [] if request.target.is_filter else [i for i in request.target.ids if i not in set(ids)]
    )
    if not request.target.is_filter and not rows:
        raise NotFound(
            "None of the chosen jobs exists (completed jobs are deleted): nothing to do."
        )
    if request.kind is ActionKind.REMOVE and not rows[0].key:
        raise Refused("Remove by key works on one job that has a key.")
    now = database_now(databases.current().alias)
    locked = sum(1 for row in rows if row.lock == HELD)
    old_locks = sum(1 for row in rows if row.lock == OLD)
    shown_rows = list(
        jobs()
        .with_state()
        .select_related("task", "job_queue")
        .filter(id__in=ids[:PREVIEW_ROWS])
        .order_by("id")
    )
    result = Preview(
        request=request,
        count=len(rows),
        rows=shown_rows,
        locked=locked,
        old_locks=old_locks,
        missing=missing,
        pinned=[row.pin for row in rows],
    )
    result.changes = {job.id: changes_of(request, job, now) for job in shown_rows}
    for job in shown_rows:
        job.changes = result.changes[job.id]
    if len(rows) > PREVIEW_ROWS:
        result.by_task_state = _by_task_state(rows)
    not_failed = sum(1 for row in rows if row.attempts < row.max_attempts)
    result.warnings = warnings(result, not_failed)
    return result


def _by_task_state(rows: list[PinnedRow]) -> list[tuple[str, str, int]]:
    """How many of the pinned jobs there are per task and state (the largest groups first),
    counted from the rows already read: a second query naming 10,000 ids cost 250 ms at 10M."""
    counts = Counter((row.task_id, row.state) for row in rows)
    names = dict(
        Task.objects.using(databases.current().alias)
        .filter(id__in={task_id for task_id, _ in counts})
        .values_list("id", "identifier")
    )
    groups = [(names.get(task_id, "?"), state, n) for (task_id, state), n in counts.items()]
    groups.sort(key=lambda group: (-group[2], group[0], group[1]))
    return groups[:BY_TASK_STATE_ROWS]


def changes_of(request: ActionRequest, job: Job, now: datetime) -> list[Change]:
    """Before -> after of every column the action changes on this job (if a worker does not
    hold it); `None` after a delete."""
    kind = request.kind
    if kind in (ActionKind.COMPLETE, ActionKind.REMOVE):
        return [Change("row", f"job {job.id}", None)]
    if kind is ActionKind.FAIL:
        return [
            Change("attempts", job.attempts, job.max_attempts),
            Change("last_error", job.last_error, request.reason or job.last_error),
        ]
    if kind is ActionKind.RUN_NOW:
        return [Change("run_at", job.run_at, now)]
    if kind is ActionKind.RETRY:
        return [Change("attempts", job.attempts, 0), Change("run_at", job.run_at, now)]
    options = request.options
    changes = []
    if options is not None:
        run_at = now if options.run_at is RUN_NOW else options.run_at
        for column, after in (
            ("run_at", run_at),
            ("priority", options.priority),
            ("attempts", options.attempts),
            ("max_attempts", options.max_attempts),
        ):
            if after is not None and getattr(job, column) != after:
                changes.append(Change(column, getattr(job, column), after))
    return changes


def _jobs_word(n: int) -> str:
    return f"{n:,} job" if n == 1 else f"{n:,} jobs"


def warnings(preview: Preview, not_failed: int) -> list[str]:
    kind, n = preview.request.kind, preview.count - preview.locked
    found = []
    if preview.locked:
        found.append(
            f"{preview.locked:,} of these jobs are held by a worker (locked less than 4 hours "
            "ago) and will be skipped."
        )
    if preview.old_locks:
        found.append(
            f"{preview.old_locks:,} have locks older than 4 hours: they will be changed although "
            "a worker may still be running them, and they keep showing as locked."
        )
    if kind is ActionKind.COMPLETE and n:
        found.append(
            f"This deletes {_jobs_word(n)} and their payloads; completed jobs leave no trace "
            "(the audit log keeps a copy)."
        )
    if kind is ActionKind.FAIL and n:
        found.append(f"{_jobs_word(n)} will not run again unless someone retries them.")
    if kind is ActionKind.RETRY and not_failed:
        found.append(
            f"{not_failed:,} of these jobs have not failed; retry resets their attempts too."
        )
    if preview.missing:
        found.append(
            f"{len(preview.missing):,} of the ids do not exist (completed jobs are deleted)."
        )
    if preview.request.target.is_filter and preview.count:
        found.append(
            f"Only these {_jobs_word(preview.count)} will be changed: jobs that start to match "
            "the filter later are left alone, and a job that changes before you confirm is skipped."
        )
    return found
