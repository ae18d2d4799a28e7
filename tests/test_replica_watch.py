"""Users watching the console with a replica configured read nothing of the worker schema on the
primary: bench/replica_watch.py, small (3 users for 20 s on 2,000 jobs).

A real primary and streaming replica (tests/replicadb.py) with pg_stat_statements, the console
under its production server as a login role of its own, its own tables in a scratch database
next to the test database, a writer busy on the primary. What the console's role ran on each
server is asserted by statement class (bench/watch_statements.py), never by time:

- on the primary: no worker table read, no write; only connection set-up and the history
  recorder's statistics read (a standby's table statistics ignore replayed changes);
- on the replica: the pages' reads of the worker tables, and not that statistics read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

from tests.dbconn import scratch_name, server_conninfo
from tests.replicadb import require_pg_basebackup

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import replica_watch  # noqa: E402
import watch_statements as ws  # noqa: E402

USERS = 3
STATISTICS = ("pg_stat_clear_snapshot", "pg_stat_user_tables")  # the recorder's, on the primary


@pytest.fixture
def result(db) -> dict:
    require_pg_basebackup()
    server = server_conninfo(dbname="postgres")
    options = replica_watch.WatchOptions(
        users=USERS,
        seconds=20,
        jobs=2_000,
        console_server_url=server,
        console_database=scratch_name("gc_replica_watch"),
    )
    try:
        yield replica_watch.run(options)
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{options.console_database}" WITH (FORCE)')


def queries(server: dict, kind: str) -> list[str]:
    return [row["query"] for row in server["by_query"] if row["class"] == kind]


@pytest.mark.faults
def test_replica_watch__no_worker_table_read_on_the_primary(result):
    primary, replica = result["servers"]["primary"], result["servers"]["replica"]
    assert replica_watch.problems(result) == []
    requests = result["requests"]
    assert set(requests["statuses"]) <= {"200", "304"}, requests
    assert requests["requests"] >= 2 * USERS  # every user polled both pages at least once
    assert result["writer"]["added"] > 0 and result["writer"]["errors"] == []

    assert (primary["statements"][ws.WORKER_READ], primary["statements"][ws.WRITE]) == (0, 0)
    assert (primary["activity"][ws.WORKER_READ], primary["activity"][ws.WRITE]) == (0, 0)
    reads = queries(primary, ws.CATALOG_READ)
    assert reads and all(any(name in q for name in STATISTICS) for q in reads), reads

    assert replica["statements"][ws.WORKER_READ] > 0 and replica["statements"][ws.WRITE] == 0
    assert replica["activity"][ws.WORKER_READ] > 0
    assert not [q for q in queries(replica, ws.CATALOG_READ) if "pg_stat_user_tables" in q]
