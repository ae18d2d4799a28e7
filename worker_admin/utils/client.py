"""WorkerUtils: one object bound to a database alias and a worker schema."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections, transaction

from worker_admin import databases, installer
from worker_admin.models import JobColumns, heartbeat_is_stale, schema_models
from worker_admin.schema import Capabilities, capabilities, clear_capabilities_cache

if TYPE_CHECKING:
    from worker_admin.recovery import (
        CleanupPreview,
        CleanupResult,
        CleanupTask,
        SweepStaleWorkersOptions,
        SweepStaleWorkersResult,
        WorkerRecoveryConfig,
    )

from worker_admin.utils.results import ForceUnlockResult, JobActionResult, RemoveJobResult
from worker_admin.utils.specs import (
    ANALYZE_AFTER_JOBS,
    MAX_REASON_LENGTH,
    RUN_NOW,
    FeatureUnavailable,
    InvalidJobAction,
    InvalidJobSpec,
    JobKeyMode,
    JobSpec,
    RawJobSpec,
    RescheduleJobOptions,
    TaskPayload,
    WorkerStatus,
    _check_identifier,
    _check_text,
    _job_ids,
    _payload_json,
    _worker_ids,
    task_payload,
)


class WorkerUtils:
    """Operations on one Graphile Worker schema through one Django database alias."""

    def __init__(
        self,
        alias: str | None = None,
        schema: str | None = None,
        *,
        task_identifiers: Sequence[str] = (),
        database: str | None = None,
    ) -> None:
        """`task_identifiers`: the tasks of the workers this code runs beside (the Rust utils
        made by a worker know them); GcTaskIdentifiers then always keeps them, since running
        workers cache their task ids. `database`: a name from GRAPHILE_WORKER_DATABASES (raises
        databases.UnknownDatabase for another); without it, the current database (the main
        one unless inside `databases.using(name)`)."""
        chosen = databases.get(database) if database is not None else databases.current()
        self.database = chosen.name
        self.alias = alias or chosen.alias
        self.schema = schema or settings.GRAPHILE_WORKER_SCHEMA
        self._qschema = installer.quote_schema(self.schema)
        # The read models bound to this schema (the app's own models are bound to
        # GRAPHILE_WORKER_SCHEMA at import): listings, and the jobs the writes return, whose
        # `task` and `job_queue` are then read from this schema too.
        self.models = schema_models(self.schema)
        self.task_identifiers = tuple(task_identifiers)

    # -- schema ---------------------------------------------------------------------------

    def migrate(self, *, recovery: bool = True) -> installer.MigrateResult:
        """Install or upgrade the worker schema (and the recovery extension) in one transaction."""
        with transaction.atomic(using=self.alias), self._cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 0")
            result = installer.migrate(cursor, self.schema, recovery=recovery)
        clear_capabilities_cache()
        return result

    def add_recovery(self) -> bool:
        """Add only the worker-recovery objects to a schema Node installed; False if present."""
        with transaction.atomic(using=self.alias), self._cursor() as cursor:
            added = installer.add_recovery(cursor, self.schema)
        clear_capabilities_cache()
        return added

    # -- adding jobs ----------------------------------------------------------------------

    def add_job(self, task: TaskPayload, spec: JobSpec | None = None) -> JobColumns:
        return self.add_raw_job(task.IDENTIFIER, task_payload(task), spec)

    def add_raw_job(
        self, identifier: str, payload: Any = None, spec: JobSpec | None = None
    ) -> JobColumns:
        spec = spec or JobSpec()
        _check_identifier(identifier)
        spec.validate()
        mode = JobKeyMode(spec.job_key_mode or JobKeyMode.REPLACE)
        sql = (
            f"SELECT * FROM {self._qschema}.add_job("
            "identifier => %s, payload => %s::json, queue_name => %s, "
            "run_at => %s::timestamptz, max_attempts => %s::int, job_key => %s, "
            "priority => %s::int, flags => %s::text[], job_key_mode => %s)"
        )
        params = [
            identifier,
            _payload_json(payload),
            spec.queue_name,
            spec.run_at,
            spec.max_attempts,
            spec.job_key,
            spec.priority,
            list(spec.flags) if spec.flags is not None else None,
            mode.value,
        ]
        with transaction.atomic(using=self.alias), self._cursor() as cursor:
            cursor.execute(sql, params)
            return self._jobs_from_cursor(cursor)[0]

    def add_jobs(self, jobs: Sequence[tuple[TaskPayload, JobSpec | None]]) -> list[JobColumns]:
        return self.add_raw_jobs(
            [RawJobSpec(t.IDENTIFIER, task_payload(t), s or JobSpec()) for t, s in jobs]
        )

    def add_raw_jobs(self, specs: Sequence[RawJobSpec]) -> list[JobColumns]:
        """Add a batch in one call of the schema's add_jobs; an empty batch writes nothing.

        UnsafeDedupe is refused in batches, and one PreserveRunAt makes the whole batch
        preserve run_at: both are the schema function's rules, checked here first so the
        message is ours.
        """
        if not specs:
            return []
        rows = [self._job_spec_row(raw) for raw in specs]
        preserve = any(raw.spec.job_key_mode == JobKeyMode.PRESERVE_RUN_AT for raw in specs)
        sql = (
            f"SELECT * FROM {self._qschema}.add_jobs("
            f"ARRAY(SELECT s FROM json_populate_recordset(NULL::{self._qschema}.job_spec, %s::json)"
            " AS s), %s::boolean)"
        )
        with transaction.atomic(using=self.alias), self._cursor() as cursor:
            cursor.execute(sql, [json.dumps(rows, ensure_ascii=False), preserve])
            jobs = self._jobs_from_cursor(cursor)
            if len(specs) >= ANALYZE_AFTER_JOBS:
                # The planner would otherwise keep estimating the table at its old size.
                cursor.execute(f"ANALYZE {self._qschema}._private_jobs")
        return jobs

    def add_batch_job(
        self, identifier: str, items: Sequence[Any], spec: JobSpec | None = None
    ) -> JobColumns:
        """One job whose payload is a JSON array; keyed replacements append to it."""
        if isinstance(items, str | bytes | Mapping) or len(items) == 0:
            raise InvalidJobSpec("A batch job needs a list with at least one item.")
        return self.add_raw_job(identifier, list(items), spec)

    def _job_spec_row(self, raw: RawJobSpec) -> dict[str, Any]:
        _check_identifier(raw.identifier)
        raw.spec.validate()
        if raw.spec.job_key_mode == JobKeyMode.UNSAFE_DEDUPE:
            raise InvalidJobSpec(
                "UnsafeDedupe is not allowed in a batch; add those jobs one by one."
            )
        payload_text = _payload_json(raw.payload)
        return {
            "identifier": raw.identifier,
            "payload": json.loads(payload_text) if payload_text is not None else None,
            "queue_name": raw.spec.queue_name,
            "run_at": raw.spec.run_at.isoformat() if raw.spec.run_at else None,
            "max_attempts": raw.spec.max_attempts,
            "job_key": raw.spec.job_key,
            "priority": raw.spec.priority,
            "flags": list(raw.spec.flags) if raw.spec.flags is not None else None,
        }

    # -- job actions (the 4-hour rule applies to all of them) -----------------------------

    def complete_jobs(self, ids: Sequence[int]) -> JobActionResult:
        """Delete the jobs as done (there is no "completed" state). The result's `changed` are the
        deleted rows, payload included: the only copy left, for an undo."""
        job_ids = _job_ids(ids)
        self._require_usable_schema()
        sql = f"SELECT * FROM {self._qschema}.complete_jobs(%s::bigint[])"
        return self._act_on_jobs(job_ids, sql, [list(job_ids)])

    def permanently_fail_jobs(
        self, ids: Sequence[int], reason: str | None = None
    ) -> JobActionResult:
        """Use up the jobs' attempts so no worker runs them again; last_error = reason, or the
        schema's default 'Manually marked as failed' when None."""
        job_ids = _job_ids(ids)
        _check_text(
            "The reason", reason, MAX_REASON_LENGTH, allow_empty=False, error=InvalidJobAction
        )
        self._require_usable_schema()
        sql = (
            f"SELECT * FROM {self._qschema}.permanently_fail_jobs("
            "%s::bigint[], error_message => %s::text)"
        )
        return self._act_on_jobs(job_ids, sql, [list(job_ids), reason])

    def reschedule_jobs(self, ids: Sequence[int], options: RescheduleJobOptions) -> JobActionResult:
        """Replace the given fields of the jobs; None keeps the current value, run_at included
        (the SQL function's behaviour, not the Rust docs'). `RUN_NOW` becomes the database's
        now() inside the transaction, so the jobs are due at once by the database's own clock."""
        job_ids = _job_ids(ids)
        if not isinstance(options, RescheduleJobOptions):
            raise InvalidJobAction("options must be a RescheduleJobOptions.")
        options.validate()
        self._require_usable_schema()
        run_now = options.run_at is RUN_NOW
        sql = (
            f"SELECT * FROM {self._qschema}.reschedule_jobs(%s::bigint[], "
            "run_at => CASE WHEN %s::boolean THEN now() ELSE %s::timestamptz END, "
            "priority => %s::int, attempts => %s::int, max_attempts => %s::int)"
        )
        params = [
            list(job_ids),
            run_now,
            None if run_now else options.run_at,
            options.priority,
            options.attempts,
            options.max_attempts,
        ]
        return self._act_on_jobs(job_ids, sql, params)

    def remove_job(self, key: str) -> RemoveJobResult:
        """Cancel the job holding `key`: deleted if no live worker holds it, otherwise detached
        (it keeps running, loses the key and its remaining attempts). The schema function sends
        the `jobs:insert` notification itself."""
        if not isinstance(key, str):
            raise InvalidJobAction("The job key must be text.")
        _check_text("The job key", key, 512, allow_empty=False, error=InvalidJobAction)
        self._require_usable_schema()
        with transaction.atomic(using=self.alias), self._cursor() as cursor:
            cursor.execute(f"SELECT * FROM {self._qschema}.remove_job(%s::text)", [key])
            job = self._jobs_from_cursor(cursor)[0]
        if job.id is None:
            # remove_job returns its row type, so an unknown key comes back as one row of nulls.
            return RemoveJobResult(key=key, removed=None, detached=None)
        # The function's two branches differ in exactly this: the detach sets key = null, the
        # delete returns the row as it was, key included.
        if job.key is None:
            return RemoveJobResult(key=key, removed=None, detached=job)
        return RemoveJobResult(key=key, removed=job, detached=None)

    def _act_on_jobs(
        self, job_ids: tuple[int, ...], sql: str, params: list[Any]
    ) -> JobActionResult:
        """Call one id-list schema function and account for every id, in one transaction.

        The function silently skips jobs a worker locked less than four hours ago and ids that do
        not exist. To tell those apart, the ids it did not return are read right after the call,
        in the same transaction, with a plain SELECT (no FOR UPDATE: the console must never hold
        row locks that a worker is waiting for). An id that still exists was skipped because a
        worker held it: the function's only other condition is the id itself, and under READ
        COMMITTED its UPDATE/DELETE re-checks a row that a worker changed concurrently against the
        newest version, so "exists but not returned" means "locked by a live worker when the
        function reached it" (it may have been released since; it was still not changed). An id
        that no longer exists is missing: never there, or already completed or removed, possibly
        by the very worker that held it a moment ago. Reading after rather than before the call
        avoids a third bucket for rows that a worker locked or deleted between the read and the
        call, and both reads share the transaction's now(), so the 4-hour boundary is the same.
        """
        with transaction.atomic(using=self.alias), self._cursor() as cursor:
            cursor.execute(sql, params)
            changed = self._jobs_from_cursor(cursor)
            changed_ids = {job.id for job in changed}
            unchanged = [job_id for job_id in job_ids if job_id not in changed_ids]
            still_there: set[int] = set()
            if unchanged:
                cursor.execute(
                    f"SELECT id FROM {self._qschema}._private_jobs WHERE id = ANY(%s::bigint[])",
                    [unchanged],
                )
                still_there = {row[0] for row in cursor.fetchall()}
        position = {job_id: index for index, job_id in enumerate(job_ids)}
        return JobActionResult(
            requested=job_ids,
            changed=sorted(changed, key=lambda job: position[job.id]),
            skipped_locked=tuple(job_id for job_id in unchanged if job_id in still_there),
            missing=tuple(job_id for job_id in unchanged if job_id not in still_there),
        )

    # -- workers --------------------------------------------------------------------------

    def list_active_workers(
        self, threshold: timedelta = timedelta(minutes=5)
    ) -> list[WorkerStatus]:
        """Every registered worker (`_private_workers`), with its heartbeat age and staleness
        (a heartbeat `threshold` old or older is stale), newest heartbeat first, as in Rust."""
        if not capabilities(self.alias, self.schema).has_workers_table:
            raise FeatureUnavailable(
                f"Schema {self.schema} has no worker registrations (_private_workers): the "
                "worker-recovery extension is not installed."
            )
        with self._cursor() as cursor:
            cursor.execute("SELECT now()")
            now = cursor.fetchone()[0]
        workers = self.models.Worker.objects.using(self.alias).order_by("-last_heartbeat_at", "id")
        return [
            WorkerStatus(
                id=w.id,
                started_at=w.started_at,
                last_heartbeat_at=w.last_heartbeat_at,
                metadata=w.metadata,
                heartbeat_age=now - w.last_heartbeat_at,
                is_stale=heartbeat_is_stale(now - w.last_heartbeat_at, threshold),
            )
            for w in workers
        ]

    def force_unlock_workers(self, worker_ids: Sequence[str]) -> ForceUnlockResult:
        """Release every job and queue lock held by these worker ids (workers known to be dead);
        attempts, run_at and last_error stay as they are, so the jobs simply become runnable.

        The schema function returns nothing, so the locks are read first in the same transaction,
        FOR UPDATE: those are exactly the rows the function is about to update (and lock) anyway,
        in the same order (jobs, then queues), so a worker waits at most one round trip longer,
        and a worker that finishes one of those jobs meanwhile cannot make the report claim a job
        it deleted.
        A lock taken by one of these ids between the read and the call (only possible if the
        worker is in fact alive) would be released but not listed.
        """
        holders = list(_worker_ids(worker_ids))
        caps = self._require_usable_schema()
        if not caps.has_force_unlock:
            raise FeatureUnavailable(f"Schema {self.schema} has no force_unlock_workers function.")
        with transaction.atomic(using=self.alias), self._cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {self._qschema}._private_jobs "
                "WHERE locked_by = ANY(%s::text[]) ORDER BY id FOR UPDATE",
                [holders],
            )
            jobs = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                f"SELECT queue_name FROM {self._qschema}._private_job_queues "
                "WHERE locked_by = ANY(%s::text[]) ORDER BY queue_name FOR UPDATE",
                [holders],
            )
            queues = [row[0] for row in cursor.fetchall()]
            cursor.execute(f"SELECT {self._qschema}.force_unlock_workers(%s::text[])", [holders])
        return ForceUnlockResult(jobs_unlocked=jobs, queues_unlocked=queues)

    # -- sweep and cleanup (worker_admin.recovery) ----------------------------------------

    def sweep_stale_workers(
        self, options: SweepStaleWorkersOptions | None = None
    ) -> SweepStaleWorkersResult:
        """Recover the jobs of dead workers and forget them, in one transaction under the Rust
        sweepers' advisory lock; Node-looking orphan lock holders are left alone unless asked."""
        from worker_admin import recovery

        return recovery.sweep_stale_workers(self.alias, self.schema, options)

    def sweep_stale_workers_with_config(
        self, config: WorkerRecoveryConfig, *, dry_run: bool = False
    ) -> SweepStaleWorkersResult:
        """The sweep with a fleet's own recovery configuration (its threshold and delay)."""
        from worker_admin import recovery

        return recovery.sweep_stale_workers(
            self.alias, self.schema, config.options(dry_run=dry_run)
        )

    def cleanup(
        self,
        tasks: Sequence[CleanupTask | str] = (),
        keep_task_identifiers: Sequence[str] = (),
    ) -> CleanupResult:
        """Run the cleanup tasks (none = all three) in one transaction."""
        from worker_admin import recovery

        keep = self._keep(keep_task_identifiers)
        return recovery.cleanup(self.alias, self.schema, tasks, keep)

    def preview_cleanup(
        self,
        tasks: Sequence[CleanupTask | str] = (),
        keep_task_identifiers: Sequence[str] = (),
    ) -> CleanupPreview:
        """What `cleanup` with the same arguments would delete now; changes nothing."""
        from worker_admin import recovery

        keep = self._keep(keep_task_identifiers)
        return recovery.preview_cleanup(self.alias, self.schema, tasks, keep)

    def _keep(self, keep_task_identifiers: Sequence[str]) -> Sequence[str]:
        if isinstance(keep_task_identifiers, str):
            return keep_task_identifiers  # recovery refuses it with a sentence, before any SQL
        return list(dict.fromkeys([*self.task_identifiers, *keep_task_identifiers]))

    # -- plumbing -------------------------------------------------------------------------

    def _require_usable_schema(self) -> Capabilities:
        """Refuse to act when the console cannot see the truth: without the schema, or when
        row-level security hides every job from this role, each id would be reported as
        "not found" even though it is there."""
        caps = capabilities(self.alias, self.schema)
        if caps.problem is not None:
            raise FeatureUnavailable(caps.problem)
        return caps

    def _cursor(self):
        return connections[self.alias].cursor()

    def _jobs_from_cursor(self, cursor) -> list[JobColumns]:
        names = [column.name for column in cursor.description]
        bound = self.models.Job
        return [
            bound.from_db(self.alias, names, _json_columns(names, row)) for row in cursor.fetchall()
        ]


def _json_columns(names: list[str], row: Sequence[Any]) -> list[Any]:
    """Decode `flags` (jsonb), which Django's connection hands back as text so that JSONField
    can decode it; `payload` is json, which psycopg has already decoded."""
    values = list(row)
    index = names.index("flags")
    if isinstance(values[index], str):
        values[index] = json.loads(values[index])
    return values
