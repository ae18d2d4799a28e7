"""One read of a random sample of id blocks, summed per state for the whole table, per task and
per queue: what worker_admin.estimates turns into counts with intervals.

The blocks are read through the primary key (a range scan each); the per-block counts are
grouped in PostgreSQL, so Python receives one row per (grouping, item), not one per job.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connections, transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    F,
    Func,
    IntegerField,
    Max,
    Min,
    Value,
    When,
)
from django.db.models.functions import Cast

from worker_admin.estimates import Design, Estimate, Sums, draw_blocks, estimate
from worker_admin.models import Job
from worker_admin.states import RETRYING, STATE_PREDICATES

NAMES = ("total", "ready", "scheduled", "locked", "failed", "retrying")
DIMENSIONS = ("all", "task", "queue")


@dataclass(frozen=True)
class Sample:
    design: Design
    sums: dict[tuple[str, int], dict[str, Sums]]

    def estimates(self, dimension: str, key: int = 0) -> dict[str, Estimate]:
        """Each count's estimate for one item; an item never seen gets "unseen" bounds."""
        found = self.sums.get((dimension, key), {})
        return {name: estimate(found.get(name, Sums()), self.design) for name in NAMES}

    def keys(self, dimension: str) -> list[int]:
        return [key for dim, key in self.sums if dim == dimension]


class InWindows(Func):
    """The id lies in one of the windows [start, start + width): an OR of primary key ranges.

    Written as one expression rather than 200 Q objects, which Django took ~20 ms to build and
    compile on every sample (a fifth of the overview's cold reading at 10M jobs)."""

    output_field = BooleanField()

    def __init__(self, starts: list[int], width: int) -> None:
        super().__init__(F("id"))
        self.starts, self.width = [int(start) for start in starts], int(width)

    def as_sql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        if params or not self.starts:
            raise ValueError("InWindows needs a plain column and at least one window")
        ranges = " OR ".join(f"({column} >= %s AND {column} < %s)" for _ in self.starts)
        bounds = [value for start in self.starts for value in (start, start + self.width)]
        return f"({ranges})", bounds


def _flags() -> dict:
    predicates = {state.value: q for state, q in STATE_PREDICATES.items()} | {"retrying": RETRYING}
    return {
        f"s_{name}": Case(When(q, then=Value(1)), default=Value(0), output_field=IntegerField())
        for name, q in predicates.items()
    }


def draw(
    alias: str, windows: int, width: int, narrowed=None, dimensions=DIMENSIONS
) -> Sample | None:
    """A fresh random sample of `windows` blocks of `width` ids, summed per item of each
    dimension; None on an empty table. `narrowed` (a Job queryset) restricts the rows counted
    to a filter's; the blocks still cover the whole id range, so the estimate is the filter's
    count in the whole table."""
    jobs = Job.objects.using(alias)
    bounds = jobs.aggregate(low=Min("id"), high=Max("id"))  # two primary key probes
    if bounds["low"] is None:
        return None
    design, starts = draw_blocks(bounds["low"], bounds["high"], windows, width)
    base = narrowed if narrowed is not None else jobs
    block = Cast((F("id") - bounds["low"]) / width, BigIntegerField())
    inner = (
        base.filter(InWindows(starts, width))
        .annotate(s_block=block, **_flags())
        .values("s_block", "task_id", "job_queue_id", *(f"s_{n}" for n in NAMES[1:]))
        .order_by()
    )
    sql, params = inner.query.sql_with_params()
    return Sample(design, _sums(alias, sql, params, dimensions, design.edges))


def _sums(alias: str, sql: str, params, dimensions, edges: tuple[int, ...]) -> dict:
    states = ", ".join(f"sum(s_{n}) AS {n}" for n in NAMES[1:])
    keys = {"all": "0::bigint", "task": "task_id", "queue": "job_queue_id"}
    per_block = " UNION ALL ".join(
        f"SELECT '{dim}' AS dim, {keys[dim]} AS key, s_block, count(*) AS total, {states} "
        f"FROM s {'WHERE job_queue_id IS NOT NULL ' if dim == 'queue' else ''}"
        f"GROUP BY {keys[dim]}, s_block"
        for dim in dimensions
    )
    edge = f"s_block IN ({', '.join(str(int(e)) for e in edges)})" if edges else "false"
    outer = ", ".join(
        f"coalesce(sum({n}) FILTER (WHERE NOT edge), 0), "
        f"coalesce(sum({n} * {n}) FILTER (WHERE NOT edge), 0), "
        f"count(*) FILTER (WHERE {n} > 0 AND NOT edge), "
        f"coalesce(sum({n}) FILTER (WHERE edge), 0)"
        for n in NAMES
    )
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        # One process, not a leader and two workers: the 200 short range scans were slower in
        # parallel (140 against 115 ms at 10M jobs) and took all the CPUs of a 2-core host from
        # the requests and job workers running beside them. Put back for the rest of the page.
        cursor.execute("SELECT current_setting('max_parallel_workers_per_gather')")
        usual = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
        cursor.execute(
            f"WITH s AS MATERIALIZED ({sql}), b AS ({per_block}) "
            f"SELECT dim, key, {outer} FROM (SELECT *, {edge} AS edge FROM b) b "
            "GROUP BY dim, key",
            params,
        )
        rows = cursor.fetchall()
        cursor.execute("SELECT set_config('max_parallel_workers_per_gather', %s, true)", [usual])
    result = {}
    for dim, key, *values in rows:
        result[(dim, key)] = {
            name: Sums(*(int(v) for v in values[4 * i : 4 * i + 4])) for i, name in enumerate(NAMES)
        }
    return result
