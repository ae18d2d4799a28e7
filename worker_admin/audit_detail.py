"""One audit entry, read for its own page: each id it names with what happened to it (and why,
where the entry stored a reason), and before -> after per column of each changed job.

The entry keeps a before-image of the rows it changed, not an after-image: the "after" of a
column is what the action set it to, read from the action and its stored parameters (the same
rules the preview showed, operations/job_actions/previewing.py). A time the action set to "now"
is the entry's own time. Nothing here writes; the page's undo goes through undo.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker_admin.audit import AuditEntry

# The page lists at most this many ids per list and this many before -> after rows; the counts
# above them stay exact (an entry holds up to 10,000 ids per list).
ROWS_SHOWN = 200

NOW = object()  # an "after" that is the moment the action ran

# Columns the page shows from an image, in this order, when an action has no rule of its own.
IMAGE_COLUMNS = ("run_at", "priority", "attempts", "max_attempts", "last_error", "locked_by")


@dataclass(frozen=True)
class ColumnChange:
    column: str
    before: Any
    after: Any
    deleted: bool = False  # the whole row went (complete, remove, cleanup)


@dataclass(frozen=True)
class ImageRow:
    id: int
    task: str | None
    changes: list[ColumnChange]


@dataclass(frozen=True)
class IdRow:
    id: int
    outcome: str  # changed, skipped, missing, not changed
    why: str = ""


def _after_values(entry: AuditEntry) -> dict[str, Any] | None:
    """Column -> the value the action set; None when the action deletes the row."""
    params = entry.parameters if isinstance(entry.parameters, dict) else {}
    action = entry.action
    if action in ("complete", "remove", "cleanup"):
        return None
    if action == "run_now":
        return {"run_at": NOW}
    if action == "retry":
        return {"attempts": 0, "run_at": NOW}
    if action == "fail":
        return {"attempts": "max_attempts", "last_error": entry.reason or None}
    if action == "reschedule":
        run_at = params.get("run_at")
        return {
            column: (NOW if column == "run_at" and run_at == "now" else params.get(column))
            for column in ("run_at", "priority", "attempts", "max_attempts")
            if params.get(column) is not None
        }
    if action == "sweep":
        return {"locked_by": None, "locked_at": None}
    return {}


def image_rows(entry: AuditEntry, limit: int = ROWS_SHOWN) -> list[ImageRow]:
    """Before -> after for the first `limit` rows of the before-image."""
    afters = _after_values(entry)
    rows = []
    for image in list(entry.before_image or [])[:limit]:
        if not isinstance(image, dict) or "id" not in image:
            continue  # an image written by another kind of entry (an add keeps specs)
        if afters is None:
            changes = [ColumnChange("row", f"job {image['id']}", None, deleted=True)]
        else:
            changes = []
            for column, after in afters.items():
                if after == "max_attempts":
                    after = image.get("max_attempts")
                before = image.get(column)
                if after is NOW or before != after:
                    changes.append(ColumnChange(column, before, after))
        rows.append(ImageRow(image["id"], image.get("task_identifier"), changes))
    return rows


def id_rows(entry: AuditEntry, limit: int = ROWS_SHOWN) -> tuple[list[IdRow], int]:
    """Every requested id (and any changed id not requested), with what happened to it; the
    first `limit` of them and how many there are in all."""
    params = entry.parameters if isinstance(entry.parameters, dict) else {}
    stale = {i for i in params.get("changed_since_preview") or [] if isinstance(i, int)}
    changed = set(_ints(entry.changed_ids))
    skipped = set(_ints(entry.skipped_ids))
    missing = set(_ints(entry.missing_ids))
    ordered = list(dict.fromkeys([*_ints(entry.requested_ids), *_ints(entry.changed_ids)]))
    rows = []
    for job_id in ordered[:limit]:
        if job_id in changed:
            rows.append(IdRow(job_id, "changed"))
        elif job_id in skipped:
            why = "changed since the preview" if job_id in stale else "a worker held it"
            rows.append(IdRow(job_id, "skipped", why))
        elif job_id in missing:
            rows.append(IdRow(job_id, "missing", "gone: completed or deleted meanwhile"))
        elif entry.outcome == AuditEntry.Outcome.DONE:
            rows.append(IdRow(job_id, "not changed"))
        else:
            rows.append(IdRow(job_id, "not changed", f"the action {entry.outcome}"))
    return rows, len(ordered)


def _ints(values: Any) -> list[int]:
    return [v for v in values or [] if isinstance(v, int) and not isinstance(v, bool)]
