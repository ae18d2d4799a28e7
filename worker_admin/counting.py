"""Counts that stay cheap on a table of millions of rows, and say how exact they are.

An exact COUNT(*) reads every matching row, which is what makes job dashboards slow. Here a
count stops at a bound ("10,000+"), and the whole table's size comes from the planner's
statistics ("~1.2M") once it is too large to count. Each value carries a sentence for the hover.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import OperationalError, connections, transaction
from django.db.models import Count, QuerySet

from worker_admin.index_advice import capped

COUNT_BOUND = 10_000


@dataclass(frozen=True)
class CountValue:
    value: int
    kind: str  # "exact", "at_least", "estimate", "not_counted" or "counting"

    @property
    def display(self) -> str:
        if self.kind == "counting":
            return f"{self.value:,}+" if self.value else "…"
        if self.kind == "at_least":
            return f"{self.value:,}+"
        if self.kind == "estimate":
            return "~" + _compact(self.value)
        if self.kind == "not_counted":
            return "?"
        return f"{self.value:,}"

    @property
    def explanation(self) -> str:
        if self.kind == "at_least":
            return (
                f"At least {self.value:,}: counting stops there so the page stays fast. "
                "Narrow the filters for an exact number."
            )
        if self.kind == "estimate":
            return (
                "An estimate: the table is large, so this comes from PostgreSQL's statistics "
                "rather than reading every row."
            )
        if self.kind == "counting":
            return (
                f"At least {self.value:,} so far; the estimate for this filter is being taken "
                "and replaces this in a moment."
            )
        if self.kind == "not_counted":
            return (
                "Not counted: on a table this large a text search would read every error and "
                "payload again just for the number. Search by job id or key, or add a filter."
            )
        return "Exact count."


NOT_COUNTED = CountValue(0, "not_counted")


def counting(seen: int) -> CountValue:
    """A count being estimated right after the page: what a bounded pass has seen so far."""
    return CountValue(seen, "counting")


def _compact(n: int) -> str:
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(n)


def bounded_count(queryset: QuerySet, bound: int = COUNT_BOUND) -> CountValue:
    """COUNT over at most bound + 1 rows: exact below the bound, "bound+" above it."""
    n = queryset.order_by().values("pk")[: bound + 1].count()
    return CountValue(bound, "at_least") if n > bound else CountValue(n, "exact")


QUERY_CANCELED = "57014"  # SQLSTATE of a statement cut by statement_timeout


def bounded_count_within(queryset: QuerySet, bound: int, budget_ms: int) -> int | None:
    """Up to bound + 1 matching rows counted, or None when that takes more than budget_ms.

    For a rare state of a filter that no index serves: finding that a 10M-row table holds 2
    such jobs reads all of it.
    """
    try:
        with statement_budget(queryset.db, budget_ms):
            return queryset.order_by().values("pk")[: bound + 1].count()
    except OperationalError as error:
        if cancelled(error):
            return None
        raise


@contextmanager
def statement_budget(alias: str, budget_ms: int) -> Iterator[None]:
    """The block's statements run with a statement timeout of budget_ms (or less, inside a page's
    index guard, index_advice.py). A savepoint: a cancelled statement leaves the page's
    connection usable, and the timeout is restored after (SET LOCAL outlives a savepoint)."""
    with (
        capped(alias, budget_ms),
        transaction.atomic(using=alias),
        connections[alias].cursor() as cursor,
    ):
        cursor.execute("SELECT current_setting('statement_timeout')")
        previous = cursor.fetchone()[0]
        # At least 1 ms: a statement_timeout of 0 would mean no limit at all.
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(max(budget_ms, 1))])
        yield
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])


def cancelled(error: BaseException) -> bool:
    """Whether a database error is a statement cut by statement_timeout."""
    return getattr(error.__cause__, "sqlstate", None) == QUERY_CANCELED


def bounded_state_counts_within(
    queryset: QuerySet, aggregates: dict, bound: int, budget_ms: int
) -> tuple[dict[str, int], bool] | None:
    """bounded_state_counts() within budget_ms; None when that takes longer."""
    try:
        with statement_budget(queryset.db, budget_ms):
            return bounded_state_counts(queryset, aggregates, bound)
    except OperationalError as error:
        if cancelled(error):
            return None
        raise


def table_estimate(alias: str, db_table: str) -> int:
    """The planner's row estimate for a table (reltuples); -1 when never analysed."""
    schema, _, table = db_table.partition('"."')
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            [schema, table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else -1


def total_count(queryset: QuerySet, alias: str, bound: int = COUNT_BOUND) -> CountValue:
    """All rows of an unfiltered table: exact when small, the planner's estimate when large."""
    counted = bounded_count(queryset, bound)
    if counted.kind == "exact":
        return counted
    estimate = table_estimate(alias, queryset.model._meta.db_table)
    return CountValue(estimate, "estimate") if estimate > bound else counted


def bounded_state_counts(
    queryset: QuerySet, aggregates: dict, bound: int = COUNT_BOUND
) -> tuple[dict[str, int], bool]:
    """Per-state counts of at most bound + 1 matching rows, in one pass; and whether the bound
    was reached (then each count is only a lower bound).

    One read instead of one bounded count per state: a filter that matches few rows reads the
    table (or its index) once, not six times.
    """
    row = queryset.order_by()[: bound + 1].aggregate(**aggregates, matched=Count("pk"))
    matched = row.pop("matched")
    return row | {"all": matched}, matched > bound
