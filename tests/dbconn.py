"""Connection strings to the test server, for tests that open their own connections or start
another process: "this server, another database or user".

They are built from libpq's own parameters (`host=/path/.pgdata dbname=test_x ...`), never by
formatting `postgresql://user@HOST:PORT/NAME`: the embedded PostgreSQL listens on a socket
directory, and a path in a URL's authority part is read as no host at all, which silently
reaches whatever server listens on the machine's default socket instead.
"""

from __future__ import annotations

import os

from django.db import connections
from psycopg.conninfo import make_conninfo

# Connection parameters from OPTIONS that must follow the server (TLS, timeouts); the console's
# application_name and session options are left to whoever connects.
CARRIED_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "passfile",
    "connect_timeout",
)


def server_params(alias: str = "default", **overrides: str | None) -> dict[str, str]:
    """libpq parameters for the server behind `alias` (its test database, during the tests),
    with `overrides` (dbname="postgres", user="role", ...) replacing any of them."""
    settings_dict = connections[alias].settings_dict
    options = settings_dict.get("OPTIONS") or {}
    params = {
        "host": settings_dict.get("HOST"),
        "port": settings_dict.get("PORT"),
        "user": settings_dict.get("USER"),
        "password": settings_dict.get("PASSWORD"),
        "dbname": settings_dict.get("NAME"),
        **{key: options.get(key) for key in CARRIED_OPTIONS},
        **overrides,
    }
    return {key: str(value) for key, value in params.items() if value not in (None, "")}


def server_conninfo(alias: str = "default", **overrides: str | None) -> str:
    """The same, as a key=value connection string (DATABASE_URL and psycopg accept it)."""
    return make_conninfo(**server_params(alias, **overrides))


def scratch_name(stem: str) -> str:
    """A database or role name of this process only: parallel runs (pytest-xdist workers, two
    checkouts on one server) must never drop each other's scratch databases."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"{stem}_{os.getpid()}{'_' + worker if worker else ''}"
