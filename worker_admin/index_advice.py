"""Reads that need an opt-in index: a time budget when it is missing, then advice, not a wait.

Without the opt-in indexes (worker_admin/indexes.py) some reads scan every job: the lock
holders (workers page, sweep dry run), one task's or one queue's jobs, the failing jobs. On
millions of jobs that is seconds. A page that makes such a read wraps it:

    with guarded(alias, LOCKED, reading="the workers page"):
        found = fleet(...)

When the index exists, or the jobs table is small (pg_class.reltuples at most
UNINDEXED_READ_ROWS), this does nothing. Otherwise the reads inside run in one transaction
with ONE budget of UNINDEXED_READ_TIMEOUT_MS for all of them together: before each query the
statement timeout is set to what is left of it. When it runs out, `IndexNeeded` names the
index, and the faces (views/index_guard.py, the JSON API) answer "create index X or narrow
the filters" at once instead of a 10-second wait for READ_STATEMENT_TIMEOUT_MS.

Only reads are guarded. A write never runs inside a guard: cutting it short half-way is what
the budget must never do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg.errors
from asgiref.local import Local
from django.conf import settings
from django.db import connections, transaction

from worker_admin.indexes import INDEXES

CACHE_SECONDS = 2.0  # how long the index list and row estimate are trusted without asking


@dataclass(frozen=True)
class Need:
    """An opt-in index that makes a read cheap, and what reads slowly without it."""

    index: str  # a name from worker_admin.indexes.INDEXES
    reads: str  # what has to be read by scanning every job without it

    @property
    def create_command(self) -> str:
        return f"python3 manage.py console_indexes create {self.index}"

    @property
    def preview_command(self) -> str:
        return f"python3 manage.py console_indexes preview {self.index}"


LOCKED = Need("console_jobs_locked", "the locked jobs and who holds them")
TASK = Need("console_jobs_task", "one task's jobs")
QUEUE = Need("console_jobs_queue", "one queue's jobs")
FAILING = Need("console_jobs_failing", "the failed and retrying jobs")
assert all(need.index in INDEXES for need in (LOCKED, TASK, QUEUE, FAILING))


class IndexNeeded(Exception):
    """A guarded read ran out of its budget: the missing index (or narrower filters) would help.

    Not a DatabaseError: nothing failed that a retry fixes, and the generic timeout page (which
    may speak of a change rolled back) must never answer it."""

    def __init__(self, needs: list[Need], reading: str, budget_ms: int, rows: int):
        self.needs = needs
        self.reading = reading
        self.budget_ms = budget_ms
        self.rows = rows  # the planner's estimate of the jobs table's rows
        self.narrow: list[tuple[str, str]] = []  # (label, url): set by the face that knows them
        names = ", ".join(need.index for need in needs)
        super().__init__(
            f"Reading {reading or 'this'} without {names} took longer than {budget_ms} ms."
        )

    @property
    def index(self) -> str:
        return self.needs[0].index

    @property
    def hint(self) -> str:
        commands = " and ".join(f"`{need.create_command}`" for need in self.needs)
        return (
            f"Create the index with {commands} (preview its size and cost first with "
            "`console_indexes preview`), or narrow the filters."
        )


# --- what the catalog says, cached briefly -------------------------------------------------


@dataclass
class _Catalog:
    present: frozenset[str]
    rows: int
    read_at: float


_catalog: dict[tuple[str, str], _Catalog] = {}


def _read_catalog(alias: str, schema: str) -> _Catalog:
    """The valid opt-in indexes and the jobs table's row estimate: one query on pg_class."""
    cached = _catalog.get((alias, schema))
    now = time.monotonic()
    if cached and now - cached.read_at < CACHE_SECONDS:
        return cached
    with connections[alias].cursor() as cursor:
        cursor.execute(
            """
            SELECT coalesce((SELECT c.reltuples::bigint FROM pg_class c
                               JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = %s AND c.relname = '_private_jobs'), -1),
                   coalesce((SELECT array_agg(c.relname::text) FROM pg_index i
                               JOIN pg_class c ON c.oid = i.indexrelid
                               JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = %s AND c.relname = ANY(%s) AND i.indisvalid),
                            '{}')
            """,
            [schema, schema, list(INDEXES)],
        )
        rows, names = cursor.fetchone()
    value = _Catalog(frozenset(names), int(rows), now)
    _catalog[(alias, schema)] = value
    return value


def clear_cache() -> None:
    """Forget what the catalog said (after an index is created or dropped here)."""
    _catalog.clear()


def present(alias: str, need: Need) -> bool:
    return need.index in _read_catalog(alias, settings.GRAPHILE_WORKER_SCHEMA).present


def missing(
    alias: str, needs: tuple[Need, ...], schema: str | None = None
) -> tuple[list[Need], int]:
    """The needs whose index is absent, when the table is large enough for that to matter
    (none otherwise), and the row estimate."""
    found = _read_catalog(alias, schema or settings.GRAPHILE_WORKER_SCHEMA)
    if found.rows <= settings.UNINDEXED_READ_ROWS:
        return [], found.rows
    return [need for need in dict.fromkeys(needs) if need.index not in found.present], found.rows


def hints(alias: str, *needs: Need) -> list[tuple[Need, int]]:
    """The needs a page's reads scan every job without, with the row estimate: for the note
    that names the index while the page still answers within its budget
    (templates/worker_admin/_index_hint.html)."""
    absent, rows = missing(alias, needs)
    return [(need, rows) for need in absent]


# --- the guard -------------------------------------------------------------------------------


@dataclass
class _Budget:
    needs: list[Need]
    reading: str
    budget_ms: int
    rows: int
    deadline: float
    cap_ms: int | None = None  # a shorter budget of one read inside (counting.py)
    narrow: list[tuple[str, str]] = field(default_factory=list)

    def left_ms(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)

    def exceeded(self) -> IndexNeeded:
        error = IndexNeeded(self.needs, self.reading, self.budget_ms, self.rows)
        error.narrow = self.narrow
        return error


_active = Local()  # alias -> _Budget of the guard running on this thread's connection


def _current(alias: str) -> _Budget | None:
    return getattr(_active, alias, None)


@contextmanager
def guarded(
    alias: str,
    *needs: Need,
    reading: str = "",
    narrow: list[tuple[str, str]] | None = None,
    schema: str | None = None,
) -> Iterator[None]:
    """Run the reads inside under one budget when one of `needs` is missing on a large table.

    Nested inside another guard on the same connection, it joins that guard's budget (a page
    has one) and adds its needs to the advice."""
    outer = _current(alias)
    if outer is not None:
        more, _rows = missing(alias, needs, schema)
        outer.needs += [need for need in more if need not in outer.needs]
        yield
        return
    absent, rows = missing(alias, needs, schema) if needs else ([], 0)
    if not absent:
        yield
        return
    budget_ms = settings.UNINDEXED_READ_TIMEOUT_MS
    budget = _Budget(absent, reading, budget_ms, rows, time.monotonic() + budget_ms / 1000)
    budget.narrow = list(narrow or [])
    connection = connections[alias]
    nested = connection.in_atomic_block
    setattr(_active, alias, budget)
    try:
        with transaction.atomic(using=alias), connection.execute_wrapper(_Wrapper(budget)):
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('statement_timeout')")
                usual = cursor.fetchone()[0]
            yield
            if nested:  # a savepoint keeps SET LOCAL until the outer commit: put it back
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [usual])
    except IndexNeeded:
        raise
    except Exception as exc:
        if _budget_ran_out(exc):
            raise budget.exceeded() from exc
        raise
    finally:
        delattr(_active, alias)


@contextmanager
def capped(alias: str, ms: int) -> Iterator[None]:
    """A read with a shorter budget of its own inside a guard (a count that may give up):
    the statement timeout is the smaller of the two. Outside a guard this does nothing."""
    budget = _current(alias)
    if budget is None:
        yield
        return
    previous, budget.cap_ms = budget.cap_ms, ms
    try:
        yield
    finally:
        budget.cap_ms = previous


class _Wrapper:
    """Before each query of a guarded read: the rest of the budget as its statement timeout."""

    def __init__(self, budget: _Budget):
        self.budget = budget

    def __call__(self, execute, sql, params, many, context):
        if "statement_timeout" in sql:  # a read that manages its own timeout (counting.py)
            return execute(sql, params, many, context)
        left = self.budget.left_ms()
        if left <= 0:
            raise self.budget.exceeded()
        timeout = left if self.budget.cap_ms is None else min(left, self.budget.cap_ms)
        # On the driver's cursor, so that this statement does not pass through the wrappers.
        context["cursor"].cursor.execute(
            "SELECT set_config('statement_timeout', %s, true)", [str(max(timeout, 1))]
        )
        return execute(sql, params, many, context)


def _budget_ran_out(exc: BaseException) -> bool:
    """Whether a statement timeout (not a cancel request) is in the exception's chain."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, psycopg.errors.QueryCanceled) and "statement timeout" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# --- which needs a jobs filter has -----------------------------------------------------------


def filter_needs(values: dict, state: str) -> tuple[Need, ...]:
    """The opt-in indexes that serve a jobs filter (JobFilters.values and its state tab)."""
    needs = []
    if values.get("task"):
        needs.append(TASK)
    if values.get("queue"):
        needs.append(QUEUE)
    if values.get("locked_by") or state == "locked":
        needs.append(LOCKED)
    if state in ("failed", "retrying") or values.get("failing") == "yes":
        needs.append(FAILING)
    return tuple(needs)
