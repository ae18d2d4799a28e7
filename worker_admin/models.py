"""Read-only views of the Graphile Worker tables, plus the console's own models.

The worker tables belong to Graphile Worker: the models are unmanaged, and saving or deleting
through them raises. Every change goes through `worker_admin.utils.WorkerUtils`, which calls the
schema's own functions in one transaction each.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

from django.apps.registry import Apps
from django.conf import settings
from django.db import models
from django.db.models import ExpressionWrapper, Value
from django.db.models.expressions import CombinedExpression

from worker_admin.states import RETRYING, STATE_PREDICATES, JobState, TransactionNow, state_case


class ReadOnlyWorkerTableError(RuntimeError):
    pass


def worker_table(name: str) -> str:
    # Django quotes db_table as one identifier; the embedded quotes make it schema.table.
    return f'{settings.GRAPHILE_WORKER_SCHEMA}"."{name}'


_READ_ONLY_MESSAGE = (
    "Graphile Worker tables are read-only here; use worker_admin.utils.WorkerUtils, "
    "which calls the schema's own functions."
)


class JSONColumn(models.JSONField):
    """A `json` (not jsonb) column: psycopg decodes it already, so Django must not decode again.

    Django registers a text loader only for jsonb, so JSONField would json.loads a value that
    is already a dict (or, worse, turn the JSON string "123" into the number 123).
    """

    def from_db_value(self, value, expression, connection):
        return value


class ReadOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ReadOnlyWorkerTableError(_READ_ONLY_MESSAGE)

    def delete(self):
        raise ReadOnlyWorkerTableError(_READ_ONLY_MESSAGE)

    def bulk_create(self, *args, **kwargs):
        raise ReadOnlyWorkerTableError(_READ_ONLY_MESSAGE)

    def bulk_update(self, *args, **kwargs):
        raise ReadOnlyWorkerTableError(_READ_ONLY_MESSAGE)

    def create(self, **kwargs):
        raise ReadOnlyWorkerTableError(_READ_ONLY_MESSAGE)


class WorkerTable(models.Model):
    _graphile_worker_table = True  # read by worker_admin.routers

    objects = ReadOnlyQuerySet.as_manager()

    class Meta:
        abstract = True
        managed = False

    def save(self, *args, **kwargs):
        raise ReadOnlyWorkerTableError(_READ_ONLY_MESSAGE)

    def delete(self, *args, **kwargs):
        raise ReadOnlyWorkerTableError(_READ_ONLY_MESSAGE)


# Each worker table is an abstract "columns" model plus a concrete model bound to
# GRAPHILE_WORKER_SCHEMA. `schema_models(name)` binds the same columns to another schema.


class TaskColumns(WorkerTable):
    id = models.IntegerField(primary_key=True)
    identifier = models.TextField(unique=True)

    class Meta(WorkerTable.Meta):
        abstract = True
        ordering = ["identifier"]

    def __str__(self) -> str:
        return self.identifier


class Task(TaskColumns):
    class Meta(TaskColumns.Meta):
        db_table = worker_table("_private_tasks")


class JobQueueColumns(WorkerTable):
    id = models.IntegerField(primary_key=True)
    queue_name = models.TextField(unique=True)
    locked_at = models.DateTimeField(null=True)
    locked_by = models.TextField(null=True)
    is_available = models.BooleanField(editable=False)

    class Meta(WorkerTable.Meta):
        abstract = True
        ordering = ["queue_name"]

    def __str__(self) -> str:
        return self.queue_name


class JobQueue(JobQueueColumns):
    class Meta(JobQueueColumns.Meta):
        db_table = worker_table("_private_job_queues")


class JobQuerySet(ReadOnlyQuerySet):
    def in_state(self, state: JobState | str) -> JobQuerySet:
        return self.filter(STATE_PREDICATES[JobState(state)])

    def ready(self) -> JobQuerySet:
        return self.in_state(JobState.READY)

    def scheduled(self) -> JobQuerySet:
        return self.in_state(JobState.SCHEDULED)

    def locked(self) -> JobQuerySet:
        return self.in_state(JobState.LOCKED)

    def failed(self) -> JobQuerySet:
        return self.in_state(JobState.FAILED)

    def retrying(self) -> JobQuerySet:
        return self.filter(RETRYING)

    def locked_by(self, worker_id: str) -> JobQuerySet:
        return self.filter(locked_by=worker_id)

    def for_task(self, identifier: str) -> JobQuerySet:
        return self.filter(task__identifier=identifier)

    def in_queue(self, queue_name: str) -> JobQuerySet:
        return self.filter(job_queue__queue_name=queue_name)

    def with_state(self) -> JobQuerySet:
        return self.annotate(state=state_case())


class JobColumns(WorkerTable):
    id = models.BigIntegerField(primary_key=True)
    # By name: each binding's Job points at the same binding's JobQueue and Task.
    job_queue = models.ForeignKey(
        "JobQueue", null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="jobs"
    )
    task = models.ForeignKey(
        "Task", on_delete=models.DO_NOTHING, db_constraint=False, related_name="jobs"
    )
    payload = JSONColumn()
    priority = models.SmallIntegerField()
    run_at = models.DateTimeField()
    attempts = models.SmallIntegerField()
    max_attempts = models.SmallIntegerField()
    last_error = models.TextField(null=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    key = models.TextField(null=True, unique=True)
    locked_at = models.DateTimeField(null=True)
    locked_by = models.TextField(null=True)
    revision = models.IntegerField()
    flags = models.JSONField(null=True)
    is_available = models.BooleanField(editable=False)

    objects = JobQuerySet.as_manager()

    class Meta(WorkerTable.Meta):
        abstract = True

    def __str__(self) -> str:
        return f"job {self.id}"

    @property
    def flag_names(self) -> list[str]:
        return sorted(self.flags) if isinstance(self.flags, dict) else []

    @property
    def is_permanently_failed(self) -> bool:
        return self.locked_at is None and self.attempts >= self.max_attempts


class Job(JobColumns):
    class Meta(JobColumns.Meta):
        db_table = worker_table("_private_jobs")


class KnownCrontabColumns(WorkerTable):
    identifier = models.TextField(primary_key=True)
    known_since = models.DateTimeField()
    last_execution = models.DateTimeField(null=True)

    class Meta(WorkerTable.Meta):
        abstract = True

    def __str__(self) -> str:
        return self.identifier


class KnownCrontab(KnownCrontabColumns):
    class Meta(KnownCrontabColumns.Meta):
        db_table = worker_table("_private_known_crontabs")


class MigrationColumns(WorkerTable):
    id = models.IntegerField(primary_key=True)
    ts = models.DateTimeField()
    breaking = models.BooleanField()

    class Meta(WorkerTable.Meta):
        abstract = True
        ordering = ["id"]

    def __str__(self) -> str:
        return f"migration {self.id}"


class Migration(MigrationColumns):
    class Meta(MigrationColumns.Meta):
        db_table = worker_table("migrations")


def heartbeat_cutoff(threshold: timedelta) -> CombinedExpression:
    """The database-clock instant before which a heartbeat counts as stale."""
    return ExpressionWrapper(
        TransactionNow() - Value(threshold), output_field=models.DateTimeField()
    )


def heartbeat_is_stale(age: timedelta, threshold: timedelta) -> bool:
    """A worker whose heartbeat is `threshold` old or older is stale: inclusive, like the Rust
    `list_active_workers`. (The schema's list_stale_workers, which the sweep uses, is strict.)"""
    return age >= threshold


class WorkerQuerySet(ReadOnlyQuerySet):
    def stale(self, threshold: timedelta) -> WorkerQuerySet:
        return self.filter(last_heartbeat_at__lte=heartbeat_cutoff(threshold))

    def healthy(self, threshold: timedelta) -> WorkerQuerySet:
        return self.filter(last_heartbeat_at__gt=heartbeat_cutoff(threshold))


class WorkerColumns(WorkerTable):
    """A heartbeating registration (the Rust worker-recovery extension's `_private_workers`)."""

    id = models.TextField(primary_key=True)
    last_heartbeat_at = models.DateTimeField()
    started_at = models.DateTimeField()
    metadata = models.JSONField(null=True)

    objects = WorkerQuerySet.as_manager()

    class Meta(WorkerTable.Meta):
        abstract = True
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id


class Worker(WorkerColumns):
    class Meta(WorkerColumns.Meta):
        db_table = worker_table("_private_workers")


@dataclass(frozen=True)
class SchemaModels:
    """The worker-table models bound to one schema: querysets, related lookups (`job.task`) and
    rows built from SQL all read that schema's tables."""

    schema: str
    Task: type[TaskColumns]
    JobQueue: type[JobQueueColumns]
    Job: type[JobColumns]
    KnownCrontab: type[KnownCrontabColumns]
    Migration: type[MigrationColumns]
    Worker: type[WorkerColumns]


_TABLES = {
    "Task": (TaskColumns, "_private_tasks"),
    "JobQueue": (JobQueueColumns, "_private_job_queues"),
    "Job": (JobColumns, "_private_jobs"),
    "KnownCrontab": (KnownCrontabColumns, "_private_known_crontabs"),
    "Migration": (MigrationColumns, "migrations"),
    "Worker": (WorkerColumns, "_private_workers"),
}
_bound: dict[str, SchemaModels] = {}
_bound_lock = threading.Lock()


def schema_models(schema: str | None = None) -> SchemaModels:
    """The models for `schema`: the app's own for GRAPHILE_WORKER_SCHEMA, otherwise a set made
    once per schema in a registry of its own (as Django's migrations build historical models),
    so they never join the app registry, its checks or makemigrations."""
    schema = schema or settings.GRAPHILE_WORKER_SCHEMA
    if schema == settings.GRAPHILE_WORKER_SCHEMA:
        return SchemaModels(schema, Task, JobQueue, Job, KnownCrontab, Migration, Worker)
    with _bound_lock:
        if schema not in _bound:
            _bound[schema] = _bind(schema)
        return _bound[schema]


def _bind(schema: str) -> SchemaModels:
    registry = Apps()
    bound = {}
    for name, (columns, table) in _TABLES.items():
        meta = type(
            "Meta",
            (columns.Meta,),
            {"app_label": "worker_admin", "apps": registry, "db_table": f'{schema}"."{table}'},
        )
        bound[name] = type(name, (columns,), {"__module__": __name__, "Meta": meta})
    return SchemaModels(schema, **bound)


# The console's own models live beside their logic; importing them here registers them.
from worker_admin.api.tokens import ApiToken  # noqa: E402, F401
from worker_admin.audit import AuditEntry  # noqa: E402, F401
from worker_admin.history.models import HistorySnapshot  # noqa: E402, F401
from worker_admin.operations.claims import Confirmation  # noqa: E402, F401
