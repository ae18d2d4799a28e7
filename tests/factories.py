"""Hand-built jobs in a chosen state, for tests.

Jobs are added through WorkerUtils like any caller's; the worker-side history (locks, attempts,
errors) is then written with SQL relative to the database clock, never by sleeping.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from worker_admin.installer import quote_schema
from worker_admin.models import Job
from worker_admin.utils import JobSpec, WorkerUtils


class JobFactory:
    def __init__(self, utils: WorkerUtils) -> None:
        self.utils = utils
        self.q = quote_schema(utils.schema)

    def add(self, identifier: str = "send_email", payload: Any = None, **spec: Any) -> Job:
        return self.utils.add_raw_job(identifier, payload or {"n": 1}, JobSpec(**spec))

    def set(self, job: Job | int, **columns_sql: str) -> Job:
        """Set columns to SQL expressions, e.g. set(job, locked_at="now() - interval '1 hour'")."""
        job_id = job if isinstance(job, int) else job.id
        assignments = ", ".join(f"{column} = {sql}" for column, sql in columns_sql.items())
        self.sql(f"UPDATE {self.q}._private_jobs SET {assignments} WHERE id = %s", [job_id])
        return Job.objects.using(self.utils.alias).get(id=job_id)

    def ready(self, identifier: str = "send_email", **spec: Any) -> Job:
        return self.set(self.add(identifier, **spec), run_at="now() - interval '1 minute'")

    def scheduled(self, identifier: str = "send_email", **spec: Any) -> Job:
        return self.set(self.add(identifier, **spec), run_at="now() + interval '1 hour'")

    def locked(self, by: str = "graphile_worker_abc123", age: str = "1 minute", **spec: Any) -> Job:
        job = self.ready(**spec)
        return self.set(
            job, locked_by=f"'{by}'", locked_at=f"now() - interval '{age}'", attempts="attempts + 1"
        )

    def failed(self, identifier: str = "send_email", error: str = "boom", **spec: Any) -> Job:
        job = self.ready(identifier, **spec)
        self.sql(
            f"UPDATE {self.q}._private_jobs SET attempts = max_attempts, last_error = %s "
            "WHERE id = %s",
            [error, job.id],
        )
        return Job.objects.using(self.utils.alias).get(id=job.id)

    def retrying(self, identifier: str = "send_email", error: str = "timeout", **spec: Any) -> Job:
        job = self.scheduled(identifier, **spec)
        self.sql(
            f"UPDATE {self.q}._private_jobs SET attempts = 2, last_error = %s WHERE id = %s",
            [error, job.id],
        )
        return Job.objects.using(self.utils.alias).get(id=job.id)

    def sql(self, statement: str, params: list | None = None) -> list[tuple]:
        with connections[self.utils.alias].cursor() as cursor:
            cursor.execute(statement, params or [])
            return cursor.fetchall() if cursor.description else []


# Every table that holds worker data (not the schema's definitions).
WORKER_DATA_TABLES = (
    "_private_jobs",
    "_private_job_queues",
    "_private_tasks",
    "_private_known_crontabs",
    "_private_workers",
)


def truncate_worker_data(alias: str, schema: str) -> None:
    """Empty every worker table that exists, keeping the schema and its objects."""
    q = quote_schema(schema)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(%s || '.' || t) IS NOT NULL",
            [list(WORKER_DATA_TABLES), q],
        )
        present = [row[0] for row in cursor.fetchall()]
        if present:
            cursor.execute(f"TRUNCATE {', '.join(f'{q}.{t}' for t in present)} RESTART IDENTITY")
