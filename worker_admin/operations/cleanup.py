"""Cleanup: delete permanently failed jobs and the task and queue rows no job references, on
exactly the targets a preview pinned, once.

    shown = preview(actor, tasks, keep_task_identifiers, reason)   # pinned targets, rows, token
    result = apply(actor, shown.token, via="web")                  # once; audited

The preview pins each failed job with its revision and updated_at, and the task identifiers and
queue names it will delete. The apply (one transaction on the console's database holding the
confirmation's row lock, the worker's inside it) locks the pinned jobs, deletes those still as
previewed and still failed, skips and reports those retried or changed since, and never touches a
job that failed after the preview. A pinned task or queue row is deleted only if it still
qualifies (unused, not kept, a queue not locked). The audit entry is written in that transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from worker_admin import audit
from worker_admin.cleanup import CleanupTask, _cleanup_arguments, plural
from worker_admin.installer import quote_schema
from worker_admin.models import schema_models
from worker_admin.operations import claims
from worker_admin.operations.errors import Refused
from worker_admin.utils import WorkerUtils, WorkerUtilsError, _json_columns

KIND = "cleanup"
PREVIEW_ROWS = 20
REASON_MAX = 2000
DELETES_JOBS = CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS
REASON_NEEDED = "Give a reason to delete permanently failed jobs; it goes in the audit log."


def utc_iso(moment: datetime | None) -> str:
    """2026-12-04T09:30:00Z: the console's format, in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


@dataclass(frozen=True)
class FailedRow:
    id: int
    task: str
    queue: str | None
    attempts: int
    max_attempts: int
    last_error: str
    updated_at: str


@dataclass(frozen=True)
class Preview:
    """What apply will delete: the pinned targets, the first rows, counts by task, warnings."""

    token: str
    tasks: tuple[CleanupTask, ...]
    keep_task_identifiers: tuple[str, ...]
    reason: str
    job_ids: list[int]
    rows: list[FailedRow]
    counts_by_task: list[tuple[str, int]]
    task_identifiers: list[str]
    queue_names: list[str]
    warnings: list[str]

    @property
    def sentences(self) -> list[str]:
        """Future tense: what applying will do."""
        said = {
            DELETES_JOBS: f"will delete {plural(len(self.job_ids), 'permanently failed job')}",
            CleanupTask.GC_TASK_IDENTIFIERS: "will delete "
            + plural(len(self.task_identifiers), "unused task identifier"),
            CleanupTask.GC_JOB_QUEUES: "will delete "
            + plural(len(self.queue_names), "unused queue"),
        }
        return [said[task] for task in self.tasks]

    @property
    def summary(self) -> str:
        """One line: "will delete 3 permanently failed jobs, 1 unused queue"."""
        return "will delete " + ", ".join(
            text.removeprefix("will delete ") for text in self.sentences
        )


@dataclass
class Result:
    """What apply did; `summary` reads "deleted N of M ...; K changed since the preview; L gone"."""

    pinned_jobs: int = 0
    deleted_job_ids: list[int] = field(default_factory=list)
    stale_job_ids: list[int] = field(default_factory=list)
    gone_job_ids: list[int] = field(default_factory=list)
    pinned_task_identifiers: int = 0
    task_identifiers: list[str] = field(default_factory=list)
    pinned_queues: int = 0
    queue_names: list[str] = field(default_factory=list)
    tasks: tuple[str, ...] = ()
    audit_entry_id: int | None = None
    left_alone: int = 0  # jobs that failed after the preview: never pinned, never touched

    @property
    def summary(self) -> str:
        done = {
            DELETES_JOBS.value: f"deleted {len(self.deleted_job_ids):,} of "
            + plural(self.pinned_jobs, "permanently failed job"),
            CleanupTask.GC_TASK_IDENTIFIERS.value: f"{len(self.task_identifiers):,} of "
            + plural(self.pinned_task_identifiers, "task identifier"),
            CleanupTask.GC_JOB_QUEUES.value: f"{len(self.queue_names):,} of "
            + plural(self.pinned_queues, "queue"),
        }
        text = ", ".join(done[task] for task in self.tasks)
        if not text.startswith("deleted"):
            text = "deleted " + text
        parts = [text]
        if self.stale_job_ids:
            parts.append(f"{len(self.stale_job_ids):,} changed since the preview")
        if self.gone_job_ids:
            parts.append(f"{len(self.gone_job_ids):,} gone")
        if self.left_alone:
            parts.append(f"{self.left_alone:,} that failed after the preview left alone")
        return "; ".join(parts)


def _request(tasks, keep, reason: str) -> dict:
    try:
        chosen, kept = _cleanup_arguments(tasks or (), keep or ())
    except WorkerUtilsError as exc:
        raise Refused(str(exc)) from None
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise Refused(f"The reason is longer than {REASON_MAX:,} characters.")
    if DELETES_JOBS in chosen and not reason:
        raise Refused(REASON_NEEDED)
    return {"tasks": [t.value for t in chosen], "keep": list(kept), "reason": reason}


def request_digest(tasks, keep, reason: str) -> str:
    """The fingerprint of a request as a face sends it again with its confirmation."""
    return claims.fingerprint(_request(tasks, keep, reason))


def preview(
    actor,
    tasks: Sequence[CleanupTask | str] = (),
    keep_task_identifiers: Sequence[str] = (),
    reason: str = "",
    *,
    utils: WorkerUtils | None = None,
) -> Preview:
    """Read-only: pin what a cleanup will delete and store it as a confirmation."""
    utils = utils or WorkerUtils()
    request = _request(tasks, keep_task_identifiers, reason)
    try:
        found = utils.preview_cleanup(request["tasks"], request["keep"])
    except WorkerUtilsError as exc:
        raise Refused(str(exc)) from None
    rows = _failed_rows(utils, found.failed_job_ids)
    pinned = {
        "jobs": [[row[0], row[1], row[2].isoformat()] for row in rows],
        "task_identifiers": found.task_identifiers,
        "queue_names": found.queue_names,
        "alias": utils.alias,
        "schema": utils.schema,
    }
    token = claims.issue(KIND, actor, request, [pinned], claims.fingerprint(request))
    return Preview(
        token=token,
        tasks=found.tasks,
        keep_task_identifiers=tuple(request["keep"]),
        reason=request["reason"],
        job_ids=[row[0] for row in rows],
        rows=[_shown(row) for row in rows[:PREVIEW_ROWS]],
        counts_by_task=Counter(row[3] for row in rows).most_common(),
        task_identifiers=found.task_identifiers,
        queue_names=found.queue_names,
        warnings=found.warnings,
    )


def _failed_rows(utils: WorkerUtils, ids: list[int]) -> list[tuple]:
    if not ids:
        return []
    q = quote_schema(utils.schema)
    with connections[utils.alias].cursor() as cursor:
        cursor.execute(
            f"SELECT j.id, j.revision, j.updated_at, t.identifier, qu.queue_name, j.attempts, "
            f"j.max_attempts, j.last_error FROM {q}._private_jobs AS j "
            f"JOIN {q}._private_tasks AS t ON t.id = j.task_id "
            f"LEFT JOIN {q}._private_job_queues AS qu ON qu.id = j.job_queue_id "
            "WHERE j.id = ANY(%s::bigint[]) ORDER BY j.id",
            [ids],
        )
        return cursor.fetchall()


def _shown(row: tuple) -> FailedRow:
    job_id, _revision, updated_at, task, queue, attempts, max_attempts, last_error = row
    first_line = (last_error or "").strip().splitlines()[:1]
    return FailedRow(
        job_id,
        task,
        queue,
        attempts,
        max_attempts,
        first_line[0][:200] if first_line else "",
        utc_iso(updated_at),
    )


def apply(actor, confirmation: str, *, via: str = "web", digest: str | None = None) -> Result:
    """Delete what the preview `confirmation` names, once (AlreadyUsed for a second apply)."""
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        row = claims.claim(confirmation, KIND, actor, digest)
        claims.refuse_if_used(row)
        pinned = row.pinned[0]
        utils = WorkerUtils(pinned["alias"], pinned["schema"])
        result = Result(tasks=tuple(row.request["tasks"]))
        with transaction.atomic(using=utils.alias), transaction.atomic(using=DEFAULT_DB_ALIAS):
            deleted = _delete(utils, pinned, row.request["keep"], result)
            entry = audit.record(
                actor=actor,
                via=via,
                action=KIND,
                outcome="done",
                worker_schema=utils.schema,
                reason=row.request["reason"],
                parameters={
                    "tasks": result.tasks,
                    "keep_task_identifiers": row.request["keep"],
                    "task_identifiers": result.task_identifiers,
                    "queue_names": result.queue_names,
                    "confirmation": row.nonce,
                },
                requested_ids=[job[0] for job in pinned["jobs"]],
                changed_ids=result.deleted_job_ids,
                skipped_ids=result.stale_job_ids,
                missing_ids=result.gone_job_ids,
                summary=result.summary,
                before_image=[audit.job_image(job) for job in deleted],
            )
        result.audit_entry_id = entry.pk
        claims.mark_used(row, {"first_entry": entry.pk, "summary": result.summary})
    return result


def _delete(utils: WorkerUtils, pinned: dict, keep: list[str], result: Result) -> list:
    q = quote_schema(utils.schema)
    as_previewed = {job[0]: (job[1], job[2]) for job in pinned["jobs"]}
    result.pinned_jobs = len(as_previewed)
    result.pinned_task_identifiers = len(pinned["task_identifiers"])
    result.pinned_queues = len(pinned["queue_names"])
    deleted = []
    with connections[utils.alias].cursor() as cursor:
        cursor.execute(
            f"SELECT id, revision, updated_at, locked_at IS NULL AND attempts = max_attempts "
            f"FROM {q}._private_jobs WHERE id = ANY(%s::bigint[]) FOR UPDATE",
            [list(as_previewed)],
        )
        now = {r[0]: r for r in cursor.fetchall()}
        result.gone_job_ids = sorted(set(as_previewed) - set(now))
        still = []
        for job_id, (revision, updated_at) in as_previewed.items():
            if job_id not in now:
                continue
            _id, now_revision, now_updated, failed = now[job_id]
            if failed and now_revision == revision and now_updated.isoformat() == updated_at:
                still.append(job_id)
            else:
                result.stale_job_ids.append(job_id)
        if still:
            cursor.execute(
                f"DELETE FROM {q}._private_jobs WHERE id = ANY(%s::bigint[]) RETURNING *", [still]
            )
            names = [column.name for column in cursor.description]
            bound = schema_models(utils.schema).Job
            deleted = sorted(
                (bound.from_db(utils.alias, names, _json_columns(names, r)) for r in cursor),
                key=lambda job: job.id,
            )
        result.deleted_job_ids = [job.id for job in deleted]
        if DELETES_JOBS.value in result.tasks:
            cursor.execute(
                f"SELECT count(*) FROM {q}._private_jobs WHERE locked_at IS NULL "
                "AND attempts = max_attempts AND NOT (id = ANY(%s::bigint[]))",
                [list(as_previewed)],
            )
            result.left_alone = cursor.fetchone()[0]
        if pinned["task_identifiers"]:
            cursor.execute(
                f"DELETE FROM {q}._private_tasks AS t WHERE t.identifier = ANY(%s::text[]) "
                "AND t.identifier <> ALL(%s::text[]) AND NOT EXISTS (SELECT 1 FROM "
                f"{q}._private_jobs AS j WHERE j.task_id = t.id) RETURNING t.identifier",
                [pinned["task_identifiers"], list(keep) + list(utils.task_identifiers)],
            )
            result.task_identifiers = sorted(r[0] for r in cursor.fetchall())
        if pinned["queue_names"]:
            cursor.execute(
                f"DELETE FROM {q}._private_job_queues AS qu WHERE qu.queue_name = ANY(%s::text[]) "
                "AND qu.locked_at IS NULL AND NOT EXISTS (SELECT 1 FROM "
                f"{q}._private_jobs AS j WHERE j.job_queue_id = qu.id) RETURNING qu.queue_name",
                [pinned["queue_names"]],
            )
            result.queue_names = sorted(r[0] for r in cursor.fetchall())
    return deleted
