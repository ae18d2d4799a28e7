"""A job action's pins: what the preview saw of each job, read so the apply can tell whether the
job changed since, computed in PostgreSQL.

A pin is [id, revision, updated_at in microseconds since the epoch, digest]. revision and
updated_at move whenever a schema function touches the job; the digest covers the values a
change made some other way (a raw UPDATE) would move: run_at, priority, attempts, max_attempts,
key, task and queue. A lock is not among them: a worker taking a job is reported as "a worker
holds them", by the schema function.

Why in SQL: a bulk preview pins up to BULK_ACTION_LIMIT jobs, and turning 10,000 rows of
timestamps into Python datetimes and hashing them there cost ~200 ms at 10M jobs; PostgreSQL
does it in a few. The preview and the apply read pins through `pinned_rows()` alone, so both
sides always compute them the same way.
"""

from __future__ import annotations

import operator
from datetime import timedelta
from typing import NamedTuple

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import (
    BigIntegerField,
    Case,
    F,
    Func,
    IntegerField,
    Q,
    QuerySet,
    TextField,
    Value,
    When,
)

from worker_admin.states import TransactionNow, state_case

OLD_LOCK = timedelta(hours=4)  # the schema's functions act on a job locked longer ago

UNLOCKED, HELD, OLD = 0, 1, 2  # PinnedRow.lock


class PinnedRow(NamedTuple):
    id: int
    revision: int
    updated_us: int
    digest: str
    task_id: int
    attempts: int
    max_attempts: int
    key: str | None
    state: str
    lock: int  # UNLOCKED, HELD (locked less than 4 hours ago, by the transaction's clock) or OLD

    @property
    def pin(self) -> list:
        return [self.id, self.revision, self.updated_us, self.digest]


def micros(column: str) -> str:
    """SQL for a timestamp as whole microseconds since the epoch: how every pin holds a time
    (these and the sweep's and force-unlock's, operations/lock_pins.py)."""
    return f"(extract(epoch from {column}) * 1000000)::bigint"


def _microseconds(field: str) -> Func:
    return Func(F(field), template=micros("%(expressions)s"), output_field=BigIntegerField())


def _digest() -> Func:
    values = Func(
        _microseconds("run_at"),
        *(F(name) for name in ("priority", "attempts", "max_attempts", "key")),
        *(F(name) for name in ("task_id", "job_queue_id")),
        function="jsonb_build_array",
    )
    return Func(values, template="left(md5(%(expressions)s::text), 16)", output_field=TextField())


def _lock() -> Case:
    return Case(
        When(Q(locked_at__isnull=True), then=Value(UNLOCKED)),
        When(Q(locked_at__gte=TransactionNow() - OLD_LOCK), then=Value(HELD)),
        default=Value(OLD),
        output_field=IntegerField(),
    )


def pinned_rows(jobs: QuerySet) -> QuerySet:
    """`jobs` as PinnedRow tuples (a values_list queryset: slice it, order it, lock it)."""
    annotated = jobs.annotate(
        pin_updated=_microseconds("updated_at"),
        pin_digest=_digest(),
        pin_state=state_case(),
        pin_lock=_lock(),
    )
    return annotated.values_list(*FIELDS, named=False)


FIELDS = ("id", "revision", "pin_updated", "pin_digest", "task_id", "attempts")
FIELDS += ("max_attempts", "key", "pin_state", "pin_lock")


def as_pinned(rows: QuerySet) -> list[PinnedRow]:
    """Run a `pinned_rows()` queryset as its SQL and take the values as psycopg loads them.
    Django's row iteration would pass two of them through int() converters for each row:
    ~20 ms of a 10,000-job preview, for values that are ints already."""
    try:
        sql, params = rows.query.get_compiler(using=rows.db).as_sql()
    except EmptyResultSet:  # a filter that cannot match (an empty id list): Django's own way
        return []
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, params)
        names = [column.name for column in cursor.description]  # each column is aliased
        pick = operator.itemgetter(*(names.index(name) for name in FIELDS))
        return [PinnedRow._make(pick(row)) for row in cursor.fetchall()]
