"""The DB-API cursor the installer and the catalog snapshot use, and their small helpers.

Plain Python (no Django imports): any cursor whose `execute` accepts a SQL string plus optional
`%s` parameters, which covers a raw psycopg 3 cursor and a Django cursor wrapper alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    """The part of a DB-API cursor the installer uses (psycopg 3 or Django's wrapper)."""

    def execute(self, query: str, params: Sequence[Any] | None = None, /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


def values(row: Any) -> tuple[Any, ...]:
    """A row as a tuple, whatever row factory the caller's cursor uses (tuple, dict, named)."""
    if isinstance(row, Mapping):
        return tuple(row.values())
    return tuple(row)


def query(cur: Cursor, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    cur.execute(sql, params)
    return [values(row) for row in cur.fetchall()]


def scalar(cur: Cursor, sql: str, params: Sequence[Any] | None = None) -> Any:
    cur.execute(sql, params)
    return values(cur.fetchone())[0]


def set_search_path(cur: Cursor, value: str) -> None:
    cur.execute("select pg_catalog.set_config('search_path', %s, false)", [value])
    cur.fetchone()
