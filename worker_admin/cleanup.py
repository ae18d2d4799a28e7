"""The cleanup tasks (GRAPHILE_WORKER.md §6): deleting permanently failed jobs and the task and
queue rows no job references, a few statements in one transaction, with a preview that runs the
same queries read-only.

They follow Node's semantics, which are correct where Rust's are not: GcJobQueues deletes unlocked
queues that no job references with NOT EXISTS (Rust's NOT IN over the nullable job_queue_id
deletes nothing as soon as one job has no queue); DeletePermanentlyFailedJobs deletes jobs whose
attempts equal max_attempts, as both do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from django.db import connections, transaction

from worker_admin.installer import quote_schema
from worker_admin.models import JobColumns, schema_models
from worker_admin.schema import Capabilities, capabilities
from worker_admin.utils import (
    FeatureUnavailable,
    InvalidJobAction,
    _check_text,
    _json_columns,
    _list_argument,
)

GC_TASK_IDENTIFIERS_WARNING = (
    "Running workers cache task ids: deleting a task identifier they handle can keep them from "
    "finding new jobs for it until they restart. Add those identifiers to the task "
    "identifiers to keep."
)


class CleanupTask(StrEnum):
    """The Rust CLI's cleanup task names; they run in this order (deleting failed jobs first
    frees the task and queue rows only they referenced)."""

    DELETE_PERMANENTLY_FAILED_JOBS = "delete-permanently-failed-jobs"
    GC_TASK_IDENTIFIERS = "gc-task-identifiers"
    GC_JOB_QUEUES = "gc-job-queues"


@dataclass(frozen=True)
class CleanupPreview:
    """What `cleanup` with the same arguments would delete now. Lists for tasks not asked for
    stay empty; `tasks` are the ones asked for, in the order they run."""

    tasks: tuple[CleanupTask, ...]
    keep_task_identifiers: tuple[str, ...]
    failed_job_ids: list[int]
    task_identifiers: list[str]
    queue_names: list[str]
    warnings: list[str]

    @property
    def counts(self) -> dict[CleanupTask, int]:
        sizes = {
            CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS: len(self.failed_job_ids),
            CleanupTask.GC_TASK_IDENTIFIERS: len(self.task_identifiers),
            CleanupTask.GC_JOB_QUEUES: len(self.queue_names),
        }
        return {task: sizes[task] for task in self.tasks}


@dataclass(frozen=True)
class CleanupResult(CleanupPreview):
    """What `cleanup` deleted; `deleted_jobs` are the permanently failed jobs' last images
    (payload included), ordered by id."""

    deleted_jobs: list[JobColumns] = field(default_factory=list)

    def audit_fields(self) -> dict:
        """What the audit log records of a cleanup, whichever face ran it: the deleted rows'
        last images included, since a deleted failed job leaves no other trace."""
        from worker_admin.audit import job_image

        return {
            "parameters": {
                "tasks": [task.value for task in self.tasks],
                "keep_task_identifiers": list(self.keep_task_identifiers),
                "task_identifiers": self.task_identifiers,
                "queue_names": self.queue_names,
            },
            "requested_ids": self.failed_job_ids,
            "changed_ids": self.failed_job_ids,
            "summary": self.summary,
            "before_image": [job_image(job) for job in self.deleted_jobs],
        }

    @property
    def summary(self) -> str:
        nouns = {
            CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS: "permanently failed job",
            CleanupTask.GC_TASK_IDENTIFIERS: "task identifier",
            CleanupTask.GC_JOB_QUEUES: "queue",
        }
        return "deleted " + ", ".join(
            plural(count, nouns[task]) for task, count in self.counts.items()
        )


def preview_cleanup(
    alias: str,
    schema: str,
    tasks: Sequence[CleanupTask | str] = (),
    keep_task_identifiers: Sequence[str] = (),
) -> CleanupPreview:
    """Read-only: what `cleanup` would delete, counting the cascade (task and queue rows that
    only the permanently failed jobs about to be deleted reference are deleted too)."""
    chosen, keep = _cleanup_arguments(tasks, keep_task_identifiers)
    require_usable(alias, schema)
    q = quote_schema(schema)
    failed: list[int] = []
    identifiers: list[str] = []
    queues: list[str] = []
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        if CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS in chosen:
            cursor.execute(
                f"SELECT id FROM {q}._private_jobs WHERE {_FAILED} ORDER BY id",
            )
            failed = [row[0] for row in cursor.fetchall()]
        # A job that the first task deletes no longer keeps its task or queue row alive.
        survives = "NOT (j.id = ANY(%s::bigint[]))"
        if CleanupTask.GC_TASK_IDENTIFIERS in chosen:
            cursor.execute(
                f"SELECT t.identifier FROM {q}._private_tasks AS t WHERE {_TASK_UNUSED} "
                f"AND NOT EXISTS (SELECT 1 FROM {q}._private_jobs AS j "
                f"WHERE j.task_id = t.id AND {survives})",
                [list(keep), failed],
            )
            identifiers = sorted(row[0] for row in cursor.fetchall())
        if CleanupTask.GC_JOB_QUEUES in chosen:
            cursor.execute(
                f"SELECT qu.queue_name FROM {q}._private_job_queues AS qu "
                f"WHERE qu.locked_at IS NULL AND NOT EXISTS (SELECT 1 FROM {q}._private_jobs AS j "
                f"WHERE j.job_queue_id = qu.id AND {survives})",
                [failed],
            )
            queues = sorted(row[0] for row in cursor.fetchall())
    return CleanupPreview(chosen, keep, failed, identifiers, queues, _warnings(chosen))


def cleanup(
    alias: str,
    schema: str,
    tasks: Sequence[CleanupTask | str] = (),
    keep_task_identifiers: Sequence[str] = (),
) -> CleanupResult:
    """Run the cleanup tasks (none given = all three) in one transaction, in CleanupTask order."""
    chosen, keep = _cleanup_arguments(tasks, keep_task_identifiers)
    require_usable(alias, schema)
    q = quote_schema(schema)
    deleted: list[JobColumns] = []
    identifiers: list[str] = []
    queues: list[str] = []
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        if CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS in chosen:
            cursor.execute(f"DELETE FROM {q}._private_jobs WHERE {_FAILED} RETURNING *")
            names = [column.name for column in cursor.description]
            bound = schema_models(schema).Job  # its task and queue are read from this schema
            deleted = sorted(
                (
                    bound.from_db(alias, names, _json_columns(names, row))
                    for row in cursor.fetchall()
                ),
                key=lambda job: job.id,
            )
        if CleanupTask.GC_TASK_IDENTIFIERS in chosen:
            cursor.execute(
                f"DELETE FROM {q}._private_tasks AS t WHERE {_TASK_UNUSED} "
                f"AND NOT EXISTS (SELECT 1 FROM {q}._private_jobs AS j WHERE j.task_id = t.id) "
                "RETURNING t.identifier",
                [list(keep)],
            )
            identifiers = sorted(row[0] for row in cursor.fetchall())
        if CleanupTask.GC_JOB_QUEUES in chosen:
            # NOT EXISTS, never NOT IN: job_queue_id is null for queue-less jobs, and NOT IN over
            # a list holding a null is never true (Rust's bug: it then deletes nothing).
            cursor.execute(
                f"DELETE FROM {q}._private_job_queues AS qu WHERE qu.locked_at IS NULL "
                f"AND NOT EXISTS (SELECT 1 FROM {q}._private_jobs AS j "
                "WHERE j.job_queue_id = qu.id) RETURNING qu.queue_name"
            )
            queues = sorted(row[0] for row in cursor.fetchall())
    return CleanupResult(
        chosen,
        keep,
        [job.id for job in deleted],
        identifiers,
        queues,
        _warnings(chosen),
        deleted_jobs=deleted,
    )


# Node's and Rust's DeletePermanentlyFailedJobs: attempts EQUAL to max_attempts. A job whose
# attempts exceed its max_attempts (max_attempts lowered after it failed) is kept by both; it
# still shows as failed, since the failed state is attempts >= max_attempts.
_FAILED = "locked_at IS NULL AND attempts = max_attempts"
_TASK_UNUSED = "t.identifier <> ALL(%s::text[])"


def _cleanup_arguments(
    tasks: Iterable[CleanupTask | str], keep_task_identifiers: Iterable[str]
) -> tuple[tuple[CleanupTask, ...], tuple[str, ...]]:
    """The tasks in run order (none = all) and the distinct keep-list, checked before any SQL."""
    chosen = set()
    for value in _list_argument(tasks, "Cleanup tasks"):
        try:
            chosen.add(CleanupTask(value))
        except ValueError:
            raise InvalidJobAction(
                f"Unknown cleanup task {value!r}; choose from {', '.join(CleanupTask)}."
            ) from None
    keep = []
    for identifier in _list_argument(keep_task_identifiers, "Task identifiers to keep"):
        if not isinstance(identifier, str):
            raise InvalidJobAction("Task identifiers to keep must be text.")
        _check_text(
            "A task identifier to keep", identifier, 128, allow_empty=False, error=InvalidJobAction
        )
        keep.append(identifier)
    ordered = tuple(task for task in CleanupTask if task in chosen or not chosen)
    return ordered, tuple(dict.fromkeys(keep))


def _warnings(tasks: tuple[CleanupTask, ...]) -> list[str]:
    return [GC_TASK_IDENTIFIERS_WARNING] if CleanupTask.GC_TASK_IDENTIFIERS in tasks else []


def require_usable(alias: str, schema: str) -> Capabilities:
    """The schema's capabilities, or FeatureUnavailable with the web pages' sentence."""
    caps = capabilities(alias, schema)
    if caps.problem is not None:
        raise FeatureUnavailable(caps.problem)
    return caps


def plural(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
