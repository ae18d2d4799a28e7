"""What can be undone, from an audit entry's before-image (the write itself is
worker_admin/operations/undo.py, previewed, pinned and applied once like every write).

Reschedules (run now, retry, reschedule) and permanent failures are undone by rescheduling each
job back to its old run_at, priority, attempts and max attempts (last_error cannot be restored
through the schema's functions, and a job's later history is not rolled back). A completed job
cannot come back: undo adds a NEW job with the saved task, payload, queue, run_at, key, priority
and flags; it gets a new id and starts at attempt 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings

from worker_admin import databases
from worker_admin.audit import AuditEntry
from worker_admin.models import Job
from worker_admin.utils import JobSpec, RawJobSpec

RESTORE_ACTIONS = {"reschedule", "run_now", "retry", "fail"}
UNDOABLE = RESTORE_ACTIONS | {"complete"}


class CannotUndo(ValueError):
    pass


@dataclass(frozen=True)
class UndoPlan:
    entry: AuditEntry
    images: list[dict]
    present: int  # for restores: how many of the jobs still exist

    @property
    def readds(self) -> bool:
        return self.entry.action == "complete"


def undoable(entry: AuditEntry, *, has_before_image: bool | None = None) -> bool:
    """`has_before_image` spares a list page loading each entry's image to ask this."""
    if has_before_image is None:
        has_before_image = bool(entry.before_image)
    return (
        entry.action in UNDOABLE
        and entry.outcome == AuditEntry.Outcome.DONE
        and has_before_image
        and entry.undo_of_id is None
    )


def plan(entry: AuditEntry) -> UndoPlan:
    if not undoable(entry):
        raise CannotUndo(
            "This entry cannot be undone: only completed, failed and rescheduled "
            "jobs with a saved before-image can, and an undo cannot be undone."
        )
    if entry.undone_by.filter(outcome=AuditEntry.Outcome.DONE).exists():
        raise CannotUndo("This action was already undone.")
    if entry.worker_schema != settings.GRAPHILE_WORKER_SCHEMA:
        raise CannotUndo(f"This action changed schema {entry.worker_schema}, not this one.")
    if entry.worker_database != databases.current().name:
        raise CannotUndo(
            f"This action changed the worker database {entry.worker_database!r}, not "
            f"{databases.current().name!r}: undo it from that database's audit entry."
        )
    images = list(entry.before_image)
    ids = [image["id"] for image in images]
    present = Job.objects.using(databases.current().alias).filter(id__in=ids).count()
    if entry.action in RESTORE_ACTIONS and present == 0:
        raise CannotUndo("None of these jobs exists any more (completed jobs are deleted).")
    return UndoPlan(entry, images, present)


def readd_spec(image: dict) -> RawJobSpec:
    flags = sorted(image["flags"]) if isinstance(image.get("flags"), dict) else None
    return RawJobSpec(
        image["task_identifier"],
        image.get("payload"),
        JobSpec(
            queue_name=image.get("queue_name"),
            run_at=datetime.fromisoformat(image["run_at"]) if image.get("run_at") else None,
            max_attempts=image.get("max_attempts"),
            job_key=image.get("key"),
            priority=image.get("priority"),
            flags=flags or None,
        ),
    )
