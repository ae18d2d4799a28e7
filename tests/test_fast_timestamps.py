"""worker_admin/fast_timestamps.py: psycopg's C loader for timestamps gives what Django's own
loader gives, on the console's real connections."""

from datetime import UTC

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.pq import Format

from worker_admin.fast_timestamps import UtcTimestamptzLoader

VALUES = [
    "2026-12-06 01:02:03.456789+05:30",
    "2026-03-29 01:30:00+00",
    "1970-01-01 00:00:00+00",
    "2000-02-29 23:59:59.999999-08",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
]


def _loaded(cursor, values: list[str]) -> list:
    cursor.execute("SELECT v::timestamptz FROM unnest(%s::text[]) AS v", [values])
    return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_the_console_s_cursors_load_timestamps_with_the_c_loader():
    with connection.cursor() as cursor:
        adapters = cursor.cursor.adapters
        loader = adapters.get_loader(adapters.types["timestamptz"].oid, Format.TEXT)
    assert loader is UtcTimestamptzLoader


@pytest.mark.django_db
def test_it_loads_what_django_s_loader_loads():
    with connection.cursor() as fast, connection.cursor() as django_own:
        register_tzloader(connection.timezone, django_own.cursor)
        ours, theirs = _loaded(fast, VALUES), _loaded(django_own, VALUES)
    assert ours == theirs
    assert [value.tzinfo for value in ours] == [UTC] * len(VALUES)
    assert [value.isoformat() for value in ours] == [value.isoformat() for value in theirs]
