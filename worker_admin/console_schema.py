"""The console's own tables live in a schema of their own, never in the worker schema.

PostgreSQL silently skips a search_path entry that does not exist, so without this Django
would create auth_user and friends in `public` (or wherever the path falls through to).
Creating the schema just before `migrate` runs keeps them where the settings say.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connections

from worker_admin.installer import quote_schema


def ensure_console_schema(using: str = "default", **_kwargs) -> None:
    if using != "default":
        return
    with connections[using].cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_schema(settings.CONSOLE_SCHEMA)}")
