"""Opt-in indexes: the few the console's pages would like and Graphile Worker does not create.

The worker schema belongs to Graphile Worker, which indexes only what its workers need (the
primary key, the job key and the two partial indexes of the "get job" query). The console never
adds to it on its own. An operator may add these through `manage.py console_indexes`, each one
built with CREATE INDEX CONCURRENTLY (no lock that blocks the workers) and audited; the
console's queries are written so that PostgreSQL's planner uses them when they exist and still
answers, more slowly, when they do not. bench/README.md measures both.

Every index costs the workers something: one more entry to write for each job inserted, and for
each update that PostgreSQL cannot do in place (locking, failing and rescheduling a job already
change indexed columns, so those updates pay the new index too). `write_cost` says how much.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connections

from worker_admin.installer import quote_schema

# Names start with "console_" so that they never collide with Graphile Worker's own indexes;
# `drop` only ever drops a name from INDEXES, never one of Graphile Worker's.


@dataclass(frozen=True)
class OptInIndex:
    name: str
    definition: str  # after "ON <jobs table>"; {table} is not needed, the columns suffice
    helps: str  # the pages it speeds up
    write_cost: str  # what the workers pay
    # The share of the jobs table's rows it holds, for the size estimate (None: all rows).
    rows_predicate: str | None = None

    def create_sql(self, schema: str) -> str:
        return (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} "
            f"ON {quote_schema(schema)}._private_jobs {self.definition}"
        )

    def drop_sql(self, schema: str) -> str:
        return f"DROP INDEX CONCURRENTLY IF EXISTS {quote_schema(schema)}.{self.name}"


INDEXES: dict[str, OptInIndex] = {
    index.name: index
    for index in (
        OptInIndex(
            name="console_jobs_locked",
            # On locked_by: Graphile Worker sets and clears locked_by with locked_at, and a
            # query for one worker's jobs (locked_by = …) lets the planner prove this predicate.
            definition="USING btree (locked_by, locked_at) WHERE locked_by IS NOT NULL",
            helps=(
                "the workers page, the stale-worker sweep and its dry run, the locked tab's "
                "count and the queues page's check for locks without a running job"
            ),
            write_cost=(
                "small: it holds only locked jobs (as many as jobs running now); each lock and "
                "unlock adds or removes one entry, on an update that is not in place anyway"
            ),
            rows_predicate="locked_by IS NOT NULL",
        ),
        OptInIndex(
            name="console_jobs_task",
            definition="USING btree (task_id, id)",
            helps=(
                "the jobs list filtered by task (its counts and a rare task's first page), "
                "bulk actions on a task"
            ),
            write_cost=(
                "one more entry (~30 bytes) for every job inserted and for every update "
                "that changes run_at, attempts or the lock (most of a job's updates)"
            ),
        ),
        OptInIndex(
            name="console_jobs_queue",
            definition="USING btree (job_queue_id, id) WHERE job_queue_id IS NOT NULL",
            helps=(
                "the jobs list filtered by queue (its counts and first page), bulk actions on "
                "a queue"
            ),
            write_cost=(
                "one more entry (~30 bytes) for every queued job inserted and for its "
                "updates that change run_at, attempts or the lock"
            ),
            rows_predicate="job_queue_id IS NOT NULL",
        ),
        OptInIndex(
            name="console_jobs_failing",
            definition="USING btree (id) WHERE attempts > 0 AND locked_at IS NULL",
            helps="the failures page, the failed and retrying tabs and their counts",
            write_cost=(
                "small: it holds only jobs that failed at least once; a job enters it when an "
                "attempt fails and leaves it when it is locked again or completes"
            ),
            rows_predicate="attempts > 0 AND locked_at IS NULL",
        ),
    )
}


class UnknownIndex(ValueError):
    pass


def get(name: str) -> OptInIndex:
    try:
        return INDEXES[name]
    except KeyError:
        names = ", ".join(INDEXES)
        raise UnknownIndex(
            f"There is no opt-in index called “{name[:60]}”; choose one of {names}."
        ) from None


@dataclass(frozen=True)
class IndexStatus:
    index: OptInIndex
    present: bool
    valid: bool  # False for an index left half-built by an interrupted CREATE … CONCURRENTLY
    size_bytes: int | None


def status(alias: str, schema: str) -> list[IndexStatus]:
    """Each opt-in index: whether it exists (and is valid) in the schema, and its size."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, i.indisvalid, pg_relation_size(c.oid)
              FROM pg_index i
              JOIN pg_class c ON c.oid = i.indexrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = %s AND c.relname = ANY(%s)
            """,
            [schema, list(INDEXES)],
        )
        found = {name: (valid, size) for name, valid, size in cursor.fetchall()}
    statuses = []
    for name, index in INDEXES.items():
        valid, size = found.get(name, (False, None))
        statuses.append(IndexStatus(index, name in found, valid, size))
    return statuses


@dataclass(frozen=True)
class Preview:
    index: OptInIndex
    sql: str
    rows: int  # the planner's estimate of the rows it would hold
    estimated_bytes: int


# A btree entry: an 8-byte tuple header, the key (two 4-to-8-byte columns, aligned) and the
# line pointer, at the default 90 % leaf fill: about 28 bytes per row for these keys.
BYTES_PER_ENTRY = 28


def preview(alias: str, schema: str, name: str) -> Preview:
    """The SQL that `create` would run and the index's estimated size, without building it."""
    index = get(name)
    table = f"{quote_schema(schema)}._private_jobs"
    with connections[alias].cursor() as cursor:
        # The planner's estimate of the rows the predicate keeps: no scan of the table.
        where = f" WHERE {index.rows_predicate}" if index.rows_predicate else ""
        cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table}{where}")
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    rows = int(plan[0]["Plan"]["Plan Rows"])
    return Preview(index, index.create_sql(schema), rows, rows * BYTES_PER_ENTRY + 8192 * 2)


def create(alias: str, schema: str, name: str) -> None:
    """Build the index without blocking the workers' writes (CREATE INDEX CONCURRENTLY).

    The console's connection carries a read statement timeout; building an index on millions
    of rows takes longer, so the timeout is lifted for this session's statement and restored.
    An index left invalid by an earlier interrupted build is dropped first, then rebuilt.
    """
    index = get(name)
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        previous = cursor.fetchone()[0]
        cursor.execute("SET statement_timeout = 0")
        try:
            if _invalid(cursor, schema, name):
                cursor.execute(index.drop_sql(schema))
            cursor.execute(index.create_sql(schema))
        finally:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [previous])
    _forget_advice()


def drop(alias: str, schema: str, name: str) -> None:
    index = get(name)
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        previous = cursor.fetchone()[0]
        cursor.execute("SET statement_timeout = 0")
        try:
            cursor.execute(index.drop_sql(schema))
        finally:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [previous])
    _forget_advice()


def _forget_advice() -> None:
    """The index guard's cached index list is stale now (index_advice.py)."""
    from worker_admin.index_advice import clear_cache  # it imports this module

    clear_cache()


def present(alias: str, schema: str, name: str) -> bool:
    """Whether the opt-in index exists and is valid (usable by the planner)."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            """
            SELECT i.indisvalid FROM pg_index i
              JOIN pg_class c ON c.oid = i.indexrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = %s AND c.relname = %s
            """,
            [schema, name],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _invalid(cursor, schema: str, name: str) -> bool:
    cursor.execute(
        """
        SELECT NOT i.indisvalid FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relname = %s
        """,
        [schema, name],
    )
    row = cursor.fetchone()
    return bool(row and row[0])
