"""The Python counterpart of Graphile Worker's Rust `WorkerUtils`.

One object bound to a database alias and a worker schema. Reads go through the read-only models;
writes call the schema's own SQL functions with bound parameters, one transaction each. Views,
management commands and the JSON API all call this module and run no SQL of their own.

Difference from the Rust documentation, on purpose: `reschedule_jobs` follows the SQL function,
which keeps a job's run_at when none is given (the Rust docs say "run immediately"). Ask for
"now" explicitly with `RUN_NOW` / `RescheduleJobOptions.run_now()`.

The job actions (complete, fail, reschedule, remove) obey the schema's 4-hour rule: a job locked
less than four hours ago belongs to a live worker and is silently skipped by the SQL function. Their
results say so (`JobActionResult.summary`: "changed N of M; K skipped because a worker holds
them; J not found") instead of pretending every id was acted on. See GRAPHILE_WORKER.md §4.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from django.conf import settings
from django.db import connections, transaction

from worker_admin import installer
from worker_admin.models import Job, Worker
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

ANALYZE_AFTER_JOBS = 10_000
SMALLINT_MAX = 32_767
BIGINT_MAX = 2**63 - 1
# One call = one statement with one array parameter and one transaction holding the row locks of
# every job it changes; bigger selections go through the bulk action, which works in chunks.
MAX_IDS_PER_CALL = 10_000
MAX_REASON_LENGTH = 10_000
# No real worker id comes close; the limit only keeps a pasted document out of the query.
MAX_WORKER_ID_LENGTH = 1_000


class WorkerUtilsError(Exception):
    """A request that the console refuses before it reaches the database; the text is for users."""


class InvalidJobSpec(WorkerUtilsError, ValueError):
    pass


class InvalidJobAction(WorkerUtilsError, ValueError):
    """Bad arguments to a job action (ids, reason, reschedule options, key, worker ids)."""


class FeatureUnavailable(WorkerUtilsError):
    pass


class JobKeyMode(StrEnum):
    REPLACE = "replace"
    PRESERVE_RUN_AT = "preserve_run_at"
    UNSAFE_DEDUPE = "unsafe_dedupe"


@dataclass(frozen=True)
class JobSpec:
    """Options for a new job; None means the schema's default (GRAPHILE_WORKER.md §4)."""

    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    job_key_mode: JobKeyMode | None = None
    priority: int | None = None
    flags: Sequence[str] | None = None

    def validate(self) -> None:
        _check_text("queue_name", self.queue_name, 128, allow_empty=False)
        _check_text("job_key", self.job_key, 512, allow_empty=False)
        if self.max_attempts is not None:
            _check_int("max_attempts", self.max_attempts, 1, SMALLINT_MAX)
        if self.priority is not None:
            _check_int("priority", self.priority, -SMALLINT_MAX - 1, SMALLINT_MAX)
        if self.run_at is not None and (
            not isinstance(self.run_at, datetime) or self.run_at.tzinfo is None
        ):
            raise InvalidJobSpec("run_at must be a timezone-aware datetime.")
        if self.job_key_mode is not None and self.job_key_mode not in set(JobKeyMode):
            raise InvalidJobSpec(f"job_key_mode must be one of {', '.join(JobKeyMode)}.")
        for flag in self.flags or ():
            _check_text("each flag", flag, 512, allow_empty=False)


@dataclass(frozen=True)
class RawJobSpec:
    identifier: str
    payload: Any = None
    spec: JobSpec = field(default_factory=JobSpec)


class TaskPayload(Protocol):
    """A typed job payload: a dataclass (or any object with `to_payload()`) naming its task."""

    IDENTIFIER: ClassVar[str]


@dataclass(frozen=True)
class WorkerStatus:
    id: str
    started_at: datetime
    last_heartbeat_at: datetime
    metadata: Any
    heartbeat_age: timedelta
    is_stale: bool


class RunNow(Enum):
    """Marker for "run at the database's now()": resolved inside the reschedule transaction, so
    it is the instant the function writes into updated_at, whatever the web server's clock says."""

    RUN_NOW = "now"


RUN_NOW = RunNow.RUN_NOW


@dataclass(frozen=True)
class RescheduleJobOptions:
    """What `reschedule_jobs` changes. None KEEPS the job's current value, for every field.

    This follows the SQL function `reschedule_jobs`, not the Rust documentation, which claims an
    omitted run_at makes the jobs run immediately: the function keeps run_at when it is null
    (GRAPHILE_WORKER.md §4). "Run now" must be asked for: `run_at=RUN_NOW` (or
    `RescheduleJobOptions.run_now(...)`), which means the database's now() at the time of the call.

    `attempts=0` gives a permanently failed job its attempts back; it runs again only if attempts
    ends up below max_attempts.
    """

    run_at: datetime | RunNow | None = None
    priority: int | None = None
    attempts: int | None = None
    max_attempts: int | None = None

    @classmethod
    def run_now(
        cls,
        *,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> RescheduleJobOptions:
        return cls(RUN_NOW, priority, attempts, max_attempts)

    def validate(self) -> None:
        """Refuse what the function would reject (smallint overflow, max_attempts < 1) or
        silently misread (a naive datetime, taken in the session's time zone), and a call that
        changes nothing."""
        fields = (self.run_at, self.priority, self.attempts, self.max_attempts)
        if all(value is None for value in fields):
            raise InvalidJobAction(
                "Nothing to change: give at least one of run_at, priority, attempts or "
                "max_attempts."
            )
        at = self.run_at
        if at is not None and at is not RUN_NOW and not _is_aware_datetime(at):
            raise InvalidJobAction("run_at must be a timezone-aware datetime or RUN_NOW.")
        checks = (
            ("priority", self.priority, -SMALLINT_MAX - 1),
            ("attempts", self.attempts, 0),
            ("max_attempts", self.max_attempts, 1),
        )
        for name, value, low in checks:
            if value is not None:
                _check_int(name, value, low, SMALLINT_MAX, error=InvalidJobAction)


@dataclass(frozen=True)
class JobActionResult:
    """What complete/fail/reschedule did to the ids asked for, without rounding up.

    Every requested id is in exactly one of `changed_ids`, `skipped_locked` and `missing`.
    `changed` holds the rows the schema function returned, in the order the ids were asked for:
    the rows after the change, except for `complete_jobs`, where they are the deleted rows (the
    before-image, payload included, which is what an undo needs).
    """

    requested: tuple[int, ...]
    changed: list[Job]
    skipped_locked: tuple[int, ...]
    missing: tuple[int, ...]

    @property
    def changed_ids(self) -> tuple[int, ...]:
        return tuple(job.id for job in self.changed)

    @property
    def summary(self) -> str:
        parts = [f"changed {len(self.changed):,} of {len(self.requested):,}"]
        if self.skipped_locked:
            count = len(self.skipped_locked)
            holder = "holds it" if count == 1 else "holds them"
            parts.append(f"{count:,} skipped because a worker {holder}")
        if self.missing:
            parts.append(f"{len(self.missing):,} not found")
        return "; ".join(parts)


@dataclass(frozen=True)
class RemoveJobResult:
    """`remove_job(key)`: at most one of `removed` and `detached` is set.

    removed: the job was not held by a live worker and is deleted (this is its last image).
    detached: a worker holds it (lock under 4 hours): it keeps running but lost its key and its
    remaining attempts, so it will not run again; a new job may now use the key.
    """

    key: str
    removed: Job | None
    detached: Job | None

    @property
    def found(self) -> bool:
        return self.removed is not None or self.detached is not None

    @property
    def summary(self) -> str:
        if self.removed is not None:
            return f"removed job {self.removed.id} (key {self.key!r})"
        if self.detached is not None:
            return (
                f"job {self.detached.id} (key {self.key!r}) is held by a worker: it keeps running, "
                "lost its key and will not be retried"
            )
        return f"no job has the key {self.key!r}"


@dataclass(frozen=True)
class ForceUnlockResult:
    """The locks `force_unlock_workers` released (read just before, in the same transaction)."""

    jobs_unlocked: list[int]
    queues_unlocked: list[str]

    @property
    def summary(self) -> str:
        jobs, queues = len(self.jobs_unlocked), len(self.queues_unlocked)
        if not jobs and not queues:
            return "nothing to unlock: those workers hold no locks"
        return (
            f"unlocked {jobs:,} job{'' if jobs == 1 else 's'} and "
            f"{queues:,} queue{'' if queues == 1 else 's'}"
        )


def _check_text(
    name: str,
    value: object,
    max_length: int,
    *,
    allow_empty: bool,
    error: type[WorkerUtilsError] = InvalidJobSpec,
) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise error(f"{name} must be text.")
    if not value and not allow_empty:
        raise error(f"{name} must not be empty.")
    if len(value) > max_length:
        raise error(f"{name} is {len(value):,} characters; the limit is {max_length:,}.")
    if "\x00" in value:
        raise error(f"{name} must not contain NUL characters.")


def _check_int(
    name: str, value: object, low: int, high: int, *, error: type[WorkerUtilsError] = InvalidJobSpec
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be a whole number.")
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}; got {value}.")


def _check_identifier(identifier: object) -> str:
    if not isinstance(identifier, str) or not identifier.strip():
        raise InvalidJobSpec("The task identifier must be non-empty text.")
    _check_text("The task identifier", identifier, 128, allow_empty=False)
    return identifier


def _is_aware_datetime(value: object) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _list_argument(values: object, what: str) -> list[object]:
    """The items of a list-like argument. Text is refused because a string is a sequence too:
    "123" would otherwise mean the ids 1, 2 and 3."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidJobAction(f"{what} must be given as a list, not {type(values).__name__}.")
    return list(values)


def _distinct(items: Iterable[Any], what: str) -> tuple[Any, ...]:
    """De-duplicate in order (after each item was checked, so True never merges into 1), then
    enforce the per-call bounds."""
    distinct = tuple(dict.fromkeys(items))
    if not distinct:
        raise InvalidJobAction(f"No {what} given.")
    if len(distinct) > MAX_IDS_PER_CALL:
        raise InvalidJobAction(
            f"{len(distinct):,} {what} given; at most {MAX_IDS_PER_CALL:,} ids per call; "
            "use the bulk action, which works in chunks."
        )
    return distinct


def _job_ids(ids: object) -> tuple[int, ...]:
    """Distinct job ids in the order given, each a possible bigint identity value (1..2^63-1)."""
    checked = []
    for value in _list_argument(ids, "Job ids"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidJobAction(f"Job ids must be whole numbers; got {_short(value)}.")
        if not 1 <= value <= BIGINT_MAX:
            raise InvalidJobAction(f"Job ids are between 1 and {BIGINT_MAX}; got {value}.")
        checked.append(int(value))  # a plain int, also for an IntEnum or other subclass
    return _distinct(checked, "job ids")


def _worker_ids(worker_ids: object) -> tuple[str, ...]:
    """Distinct worker ids (the `locked_by` values) in the order given."""
    checked = []
    for value in _list_argument(worker_ids, "Worker ids"):
        if not isinstance(value, str):
            raise InvalidJobAction(f"Worker ids must be text; got {_short(value)}.")
        _check_text(
            "A worker id", value, MAX_WORKER_ID_LENGTH, allow_empty=False, error=InvalidJobAction
        )
        checked.append(str(value))
    return _distinct(checked, "worker ids")


def _payload_json(payload: Any) -> str | None:
    if payload is None:
        return None
    try:
        return json.dumps(payload, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJobSpec(f"The payload is not valid JSON: {exc}.") from None


def task_payload(task: TaskPayload) -> Any:
    if hasattr(task, "to_payload"):
        return task.to_payload()
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        return dataclasses.asdict(task)
    if isinstance(task, Mapping):
        return dict(task)
    raise InvalidJobSpec(f"{type(task).__name__} is neither a dataclass nor has to_payload().")


class WorkerUtils:
    """Operations on one Graphile Worker schema through one Django database alias."""

    def __init__(
        self,
        alias: str | None = None,
        schema: str | None = None,
        *,
        task_identifiers: Sequence[str] = (),
    ) -> None:
        """`task_identifiers`: the tasks of the workers this code runs beside (the Rust utils
        made by a worker know them); GcTaskIdentifiers then always keeps them, since running
        workers cache their task ids."""
        self.alias = alias or settings.WORKER_DATABASE
        self.schema = schema or settings.GRAPHILE_WORKER_SCHEMA
        self._qschema = installer.quote_schema(self.schema)
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

    def add_job(self, task: TaskPayload, spec: JobSpec | None = None) -> Job:
        return self.add_raw_job(task.IDENTIFIER, task_payload(task), spec)

    def add_raw_job(self, identifier: str, payload: Any = None, spec: JobSpec | None = None) -> Job:
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

    def add_jobs(self, jobs: Sequence[tuple[TaskPayload, JobSpec | None]]) -> list[Job]:
        return self.add_raw_jobs(
            [RawJobSpec(t.IDENTIFIER, task_payload(t), s or JobSpec()) for t, s in jobs]
        )

    def add_raw_jobs(self, specs: Sequence[RawJobSpec]) -> list[Job]:
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
    ) -> Job:
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
        """Every registered worker (`_private_workers`), with its heartbeat age and staleness."""
        if not capabilities(self.alias, self.schema).has_workers_table:
            raise FeatureUnavailable(
                f"Schema {self.schema} has no worker registrations (_private_workers): the "
                "worker-recovery extension is not installed."
            )
        with self._cursor() as cursor:
            cursor.execute("SELECT now()")
            now = cursor.fetchone()[0]
        workers = Worker.objects.using(self.alias).order_by("id")
        return [
            WorkerStatus(
                id=w.id,
                started_at=w.started_at,
                last_heartbeat_at=w.last_heartbeat_at,
                metadata=w.metadata,
                heartbeat_age=now - w.last_heartbeat_at,
                is_stale=now - w.last_heartbeat_at > threshold,
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

    def _jobs_from_cursor(self, cursor) -> list[Job]:
        names = [column.name for column in cursor.description]
        return [
            Job.from_db(self.alias, names, _json_columns(names, row)) for row in cursor.fetchall()
        ]


def _json_columns(names: list[str], row: Sequence[Any]) -> list[Any]:
    """Decode `flags` (jsonb), which Django's connection hands back as text so that JSONField
    can decode it; `payload` is json, which psycopg has already decoded."""
    values = list(row)
    index = names.index("flags")
    if isinstance(values[index], str):
        values[index] = json.loads(values[index])
    return values


# Re-exported lazily: worker_admin.recovery imports this module, so importing it here at load
# time would be circular.
_RECOVERY_EXPORTS = frozenset(
    {
        "CleanupPreview",
        "CleanupResult",
        "CleanupTask",
        "RecoverableJob",
        "SweepStaleWorkersOptions",
        "SweepStaleWorkersResult",
        "WorkerRecoveryConfig",
    }
)


def __getattr__(name: str) -> Any:
    if name in _RECOVERY_EXPORTS:
        from worker_admin import recovery

        return getattr(recovery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
