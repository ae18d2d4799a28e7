"""The Python counterpart of Graphile Worker's Rust `WorkerUtils`.

One object bound to a database alias and a worker schema. Reads go through the read-only models;
writes call the schema's own SQL functions with bound parameters, one transaction each. Views,
management commands and the JSON API all call this module and run no SQL of their own.

Difference from the Rust documentation, on purpose: `reschedule_jobs` follows the SQL function,
which keeps a job's run_at when none is given (the Rust docs say "run immediately"). Ask for
"now" explicitly. (The write side lands with the job-actions work; see GRAPHILE_WORKER.md §4.)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from django.conf import settings
from django.db import connections, transaction

from worker_admin import installer
from worker_admin.models import Job, Worker
from worker_admin.schema import capabilities, clear_capabilities_cache

ANALYZE_AFTER_JOBS = 10_000
SMALLINT_MAX = 32_767


class WorkerUtilsError(Exception):
    """A request that the console refuses before it reaches the database; the text is for users."""


class InvalidJobSpec(WorkerUtilsError, ValueError):
    pass


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


def _check_text(name: str, value: object, max_length: int, *, allow_empty: bool) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidJobSpec(f"{name} must be text.")
    if not value and not allow_empty:
        raise InvalidJobSpec(f"{name} must not be empty.")
    if len(value) > max_length:
        raise InvalidJobSpec(f"{name} is {len(value)} characters; the limit is {max_length}.")
    if "\x00" in value:
        raise InvalidJobSpec(f"{name} must not contain NUL characters.")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobSpec(f"{name} must be a whole number.")
    if not low <= value <= high:
        raise InvalidJobSpec(f"{name} must be between {low} and {high}; got {value}.")


def _check_identifier(identifier: object) -> str:
    if not isinstance(identifier, str) or not identifier.strip():
        raise InvalidJobSpec("The task identifier must be non-empty text.")
    _check_text("The task identifier", identifier, 128, allow_empty=False)
    return identifier


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

    def __init__(self, alias: str | None = None, schema: str | None = None) -> None:
        self.alias = alias or settings.WORKER_DATABASE
        self.schema = schema or settings.GRAPHILE_WORKER_SCHEMA
        self._qschema = installer.quote_schema(self.schema)

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

    # -- plumbing -------------------------------------------------------------------------

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
