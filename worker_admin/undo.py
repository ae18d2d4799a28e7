"""Undo an audited action from its before-image, itself audited.

Reschedules (run now, retry, reschedule) and permanent failures are undone by rescheduling each
job back to its old run_at, priority, attempts and max attempts (last_error cannot be restored
through the schema's functions, and a job's later history is not rolled back). A completed job
cannot come back: undo adds a NEW job with the saved task, payload, queue, run_at, key, priority
and flags; it gets a new id and starts at attempt 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction

from worker_admin import audit
from worker_admin.audit import AuditEntry
from worker_admin.models import Job
from worker_admin.utils import JobSpec, RawJobSpec, RescheduleJobOptions, WorkerUtils

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

    @property
    def fingerprint(self) -> str:
        return f"undo:{self.entry.pk}"


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
    images = list(entry.before_image)
    ids = [image["id"] for image in images]
    present = Job.objects.using(settings.WORKER_DATABASE).filter(id__in=ids).count()
    if entry.action in RESTORE_ACTIONS and present == 0:
        raise CannotUndo("None of these jobs exists any more (completed jobs are deleted).")
    return UndoPlan(entry, images, present)


def execute(undo: UndoPlan, *, actor, via: str = "web") -> AuditEntry:
    utils = WorkerUtils()
    entry = undo.entry
    with transaction.atomic(using=utils.alias), transaction.atomic(using="default"):
        # Two confirmations of the same undo (a double click, two tabs) queue on the entry's row;
        # the second then finds the first's "done" entry and is refused, so a completed job is
        # never re-added twice.
        AuditEntry.objects.select_for_update().filter(pk=entry.pk).first()
        if entry.undone_by.filter(outcome=AuditEntry.Outcome.DONE).exists():
            raise CannotUndo("This action was already undone.")
        if undo.readds:
            added = utils.add_raw_jobs([_readd_spec(image) for image in undo.images])
            changed, skipped, missing = [job.id for job in added], [], []
            summary = (
                f"re-added {len(added):,} completed job{'s' if len(added) != 1 else ''} "
                "as new jobs (new ids, attempts from 0)"
            )
        else:
            changed, skipped, missing = _restore(utils, undo.images)
            summary = f"restored {len(changed):,} of {len(undo.images):,}"
            if skipped:
                summary += f"; {len(skipped):,} skipped because a worker holds them"
            if missing:
                summary += f"; {len(missing):,} no longer exist"
        return audit.record(
            actor=actor,
            via=via,
            action=f"undo_{entry.action}",
            outcome="done",
            reason=f"undo of audit entry #{entry.pk}",
            parameters={"undo_of": entry.pk},
            requested_ids=[image["id"] for image in undo.images],
            changed_ids=changed,
            skipped_ids=skipped,
            missing_ids=missing,
            summary=summary,
            undo_of=entry,
        )


def _restore(utils: WorkerUtils, images: list[dict]) -> tuple[list[int], list[int], list[int]]:
    """Reschedule each job back; jobs with the same old values go in one call."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for image in images:
        key = (image["run_at"], image["priority"], image["attempts"], image["max_attempts"])
        groups[key].append(image["id"])
    changed, skipped, missing = [], [], []
    for (run_at, priority, attempts, max_attempts), ids in groups.items():
        result = utils.reschedule_jobs(
            ids,
            RescheduleJobOptions(
                run_at=datetime.fromisoformat(run_at),
                priority=priority,
                attempts=attempts,
                max_attempts=max_attempts,
            ),
        )
        changed += result.changed_ids
        skipped += result.skipped_locked
        missing += result.missing
    return changed, skipped, missing


def _readd_spec(image: dict) -> RawJobSpec:
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
