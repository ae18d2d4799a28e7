"""Timestamps loaded by psycopg's C loader instead of Django's pure-Python one.

Django's psycopg backend registers a timestamptz loader that subclasses psycopg's Python
`TimestamptzLoader` (to set the connection's time zone), which bypasses the C loader of
psycopg_binary: 10,000 rows of three timestamps took ~80 ms to load instead of ~5 ms, a large
part of the sweep's dry run and of the pages that list many jobs at 10M. In a session whose
TimeZone is UTC (Django sets it so with USE_TZ and no per-database TIME_ZONE) both loaders give
the same aware datetimes in `datetime.timezone.utc`; only then is the C one registered, with the
`timezone` attribute Django's `create_cursor` compares, so Django sees its own setting.
"""

from __future__ import annotations

from datetime import UTC

import psycopg
from django.db.backends.signals import connection_created
from psycopg.adapt import Loader
from psycopg.pq import Format

# The loader psycopg registers by default: its C one when psycopg_binary (the console's
# psycopg[binary]) or psycopg_c is installed, else its Python one (then nothing is gained).
_DEFAULT = psycopg.adapters.get_loader(psycopg.adapters.types["timestamptz"].oid, Format.TEXT)
_CLoader = _DEFAULT if _DEFAULT.__module__.startswith(("psycopg_binary", "psycopg_c")) else None


class UtcTimestamptzLoader(Loader):
    """The C loader behind the `timezone` attribute Django's create_cursor compares with
    connection.timezone (the C class cannot be subclassed)."""

    timezone = UTC

    def __init__(self, oid: int, context=None):
        super().__init__(oid, context)
        self._load = _CLoader(oid, context).load

    def load(self, data):
        return self._load(data)


def _register(sender, connection, **kwargs) -> None:
    if _CLoader is None or connection.vendor != "postgresql":
        return
    if connection.timezone != UTC or connection.timezone_name != "UTC":
        return  # another session time zone: Django's loader knows how to read it
    connection.connection.adapters.register_loader("timestamptz", UtcTimestamptzLoader)


def connect() -> None:
    connection_created.connect(_register, dispatch_uid="worker_admin.fast_timestamps")
