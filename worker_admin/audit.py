"""The audit log: who did what, when, why, to which jobs, with what result.

It lives in the console's own tables (never the worker schema) and is append-only through the
application: entries are created once, with their outcome, and never updated or deleted here.
A write that fails is recorded too, in its own transaction, so an attempt never goes missing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ObjectDoesNotExist
from django.db import models


class AppendOnlyError(RuntimeError):
    pass


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("The audit log is append-only.")

    def delete(self):
        raise AppendOnlyError("The audit log is append-only.")

    def for_job(self, job_id: int) -> AuditQuerySet:
        """Entries that named job `job_id` of the current worker database (ids are per
        database: job 7 of another database is another job)."""
        return self.filter(worker_database=current_database_name()).filter(
            models.Q(requested_ids__contains=[job_id]) | models.Q(changed_ids__contains=[job_id])
        )


# What an export shows of an entry (the page's CSV and JSON, the API): everything but the
# before-image, which holds whole payloads and stays in the database for undo.
EXPORT_FIELDS = (
    "id",
    "created_at",
    "actor_name",
    "via",
    "action",
    "outcome",
    "reason",
    "summary",
    "error",
    "worker_schema",
    "worker_database",
    "parameters",
    "filter",
    "requested_ids",
    "changed_ids",
    "skipped_ids",
    "missing_ids",
    "undo_of_id",
)


PATH = "jsonb_path_ops"  # the GIN operator class for @> (containment) alone: smaller, faster


def current_database_name() -> str:
    from worker_admin.databases import current

    return current().name


class AuditEntry(models.Model):
    class Outcome(models.TextChoices):
        DONE = "done", "done"
        FAILED = "failed", "failed"
        REJECTED = "rejected", "rejected"
        # A change that cannot share a transaction with its entry (CREATE INDEX CONCURRENTLY):
        # "started" before it, then "done" or "failed" (operations/indexes.py).
        STARTED = "started", "started"

    class Via(models.TextChoices):
        WEB = "web", "console"
        ADMIN = "admin", "admin site"
        API = "api", "JSON API"
        CLI = "cli", "command line"
        PYTHON = "python", "Python API"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_name = models.CharField(max_length=150, help_text="Kept when the user is deleted.")
    via = models.CharField(max_length=10, choices=Via.choices)
    action = models.CharField(max_length=40, db_index=True)
    reason = models.TextField(blank=True)
    worker_schema = models.CharField(max_length=63)
    # Which worker database (GRAPHILE_WORKER_DATABASES); the one the request or command was on.
    worker_database = models.CharField(max_length=40, default=current_database_name)
    parameters = models.JSONField(default=dict, blank=True)
    filter = models.JSONField(null=True, blank=True, help_text="The job filter a bulk action used.")
    requested_ids = models.JSONField(default=list, blank=True)
    changed_ids = models.JSONField(default=list, blank=True)
    skipped_ids = models.JSONField(default=list, blank=True)
    missing_ids = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    before_image = models.JSONField(
        default=list, blank=True, help_text="The changed rows as they were: enough to undo."
    )
    undo_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by"
    )

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        # A job's page lists the entries that named it (for_job): without these, every entry's
        # id lists were read and detoasted on each view (33 ms at 829 entries of bulk actions,
        # and growing with the log); with them, a lookup of the entries that contain the id.
        indexes = [
            GinIndex(fields=["requested_ids"], name="wa_audit_requested_ids", opclasses=[PATH]),
            GinIndex(fields=["changed_ids"], name="wa_audit_changed_ids", opclasses=[PATH]),
        ]
        permissions = [
            ("act_on_jobs", "Can add, complete, fail, reschedule and remove jobs"),
            ("run_maintenance", "Can sweep, force-unlock, clean up and migrate"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AppendOnlyError("Audit entries are never changed once written.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any):
        raise AppendOnlyError("The audit log is append-only.")


BEFORE_IMAGE_LIMIT = 10_000  # rows; past this the entry says how many it left out


def _task_identifier(job) -> str | None:
    try:
        return job.task.identifier
    except ObjectDoesNotExist:  # no foreign key: a cleanup may have removed the task row
        return None


def _queue_name(job) -> str | None:
    if job.job_queue_id is None:
        return None
    try:
        return job.job_queue.queue_name
    except ObjectDoesNotExist:  # no foreign key in the schema: the queue row may be gone
        return None


def job_image(job, *, with_payload: bool = True) -> dict[str, Any]:
    """A job row as JSON: what undo needs (payload, schedule, attempts, key, flags)."""
    image = {
        "id": job.id,
        "task_identifier": _task_identifier(job),
        "task_id": job.task_id,
        "job_queue_id": job.job_queue_id,
        "queue_name": _queue_name(job),
        "priority": job.priority,
        "run_at": job.run_at.isoformat() if job.run_at else None,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "key": job.key,
        "flags": job.flags,
        "locked_at": job.locked_at.isoformat() if job.locked_at else None,
        "locked_by": job.locked_by,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "revision": job.revision,
    }
    if with_payload:  # read only when asked: a deferred payload would cost a query per row
        image["payload"] = job.payload
    return image


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, or its class name: database drivers add detail
    and context lines that belong in the log, not in an audit entry or a one-line answer."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def record(
    *,
    actor,
    via: str,
    action: str,
    outcome: str,
    worker_schema: str | None = None,
    reason: str = "",
    parameters: dict | None = None,
    filter: dict | None = None,
    requested_ids=(),
    changed_ids=(),
    skipped_ids=(),
    missing_ids=(),
    summary: str = "",
    error: str = "",
    before_image=(),
    undo_of: AuditEntry | None = None,
) -> AuditEntry:
    """Write one audit entry. `actor` is a user, or a name (the OS user for the CLI)."""
    user = actor if hasattr(actor, "get_username") else None
    name = user.get_username() if user is not None else str(actor or "unknown")
    image = list(before_image)
    if len(image) > BEFORE_IMAGE_LIMIT:
        summary += f" (before-image keeps the first {BEFORE_IMAGE_LIMIT:,} of {len(image):,} rows)"
        image = image[:BEFORE_IMAGE_LIMIT]
    return AuditEntry.objects.create(
        actor=user if user is not None and user.pk else None,
        actor_name=name[:150],
        via=via,
        action=action,
        outcome=outcome,
        worker_schema=worker_schema or settings.GRAPHILE_WORKER_SCHEMA,
        reason=reason,
        parameters=parameters or {},
        filter=filter,
        requested_ids=list(requested_ids),
        changed_ids=list(changed_ids),
        skipped_ids=list(skipped_ids),
        missing_ids=list(missing_ids),
        summary=summary,
        error=error,
        before_image=image,
        undo_of=undo_of,
    )
