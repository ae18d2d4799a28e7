"""The overview's row per worker database, when the console watches several.

Each row is that database's own overview snapshot (worker_admin/snapshots.py), the one its
overview shows and shares with every viewer, so the row costs nothing extra once anyone watches
that database, and a database that cannot be read is a row saying so, never an error page.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError

from worker_admin import databases, snapshots
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities
from worker_admin.stats import QueueStats, queue_stats


@dataclass(frozen=True)
class DatabaseHealth:
    name: str
    url: str
    current: bool
    stats: QueueStats | None = None
    problem: str | None = None


def overview_snapshot(database: databases.WorkerDatabase, schema: str) -> snapshots.Snapshot:
    """The overview's shared snapshot of `database` (the same key its own overview uses), read
    from its replica where one is configured and healthy (worker_admin/replica.py)."""
    with databases.using(database.name):
        alias = read_alias()
    return snapshots.shared(
        f"overview:{alias}:{schema}",
        lambda: queue_stats(alias),
        seconds=settings.SHARED_SNAPSHOT_SECONDS,
    )


def database_rows(request) -> tuple[list[DatabaseHealth], list[str]]:
    """One row per database the user may open, and the snapshot versions they show (for the
    polled fragment's ETag)."""
    rows, versions = [], []
    for database in databases.every():
        if not databases.may_open(request.user, database):
            continue
        url = databases.url_in(request, database, "/")
        current = database.name == databases.current().name
        with databases.using(database.name):
            try:
                caps = read_capabilities()
                if not caps.usable:
                    rows.append(DatabaseHealth(database.name, url, current, problem=caps.problem))
                    versions.append(f"{database.name}:problem")
                    continue
                snapshot = overview_snapshot(database, caps.schema)
            except DatabaseError:
                rows.append(
                    DatabaseHealth(database.name, url, current, problem="cannot be reached")
                )
                versions.append(f"{database.name}:down")
                continue
        rows.append(DatabaseHealth(database.name, url, current, stats=snapshot.value))
        versions.append(snapshot.version)
    return rows, versions
