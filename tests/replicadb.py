"""A throwaway primary and a REAL streaming replica of it, for tests/test_replica.py and the
replica benchmark (bench/replica.py).

The primary is a tests/faultdb.py Cluster (initdb, pg_ctl, a free port) with wal_level=replica
and a trusted replication entry in pg_hba.conf. The replica is made from it by pg_basebackup
(-R writes standby.signal and primary_conninfo; -X stream carries the WAL written meanwhile) and
started on a port of its own: a hot standby that streams from the primary, exactly as in
production, with nothing simulated.

`python -m tests.replicadb up DBNAME` starts a pair, prints both URLs and keeps them until
interrupted (the benchmark's set-up, docs/scaling.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from tests.faultdb import PG_BIN, START_TIMEOUT, Cluster, _server_user, free_port

REPLAY_WAIT = 60.0  # seconds a test waits for the replica to replay what the primary wrote


def require_pg_basebackup() -> None:
    """Skip (with the reason) when the machine has no pg_basebackup; CI has it."""
    if not (PG_BIN / "pg_basebackup").exists():
        reason = f"pg_basebackup not found in {PG_BIN}: no streaming replica can be made"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set, so this is an error, not a skip)")
        pytest.skip(reason)


class Primary(Cluster):
    """A cluster that streams its WAL: wal_level=replica, replication trusted from 127.0.0.1.

    `settings` are more server settings (name: value); the replica, a copy of the primary's
    data folder, starts with them too (shared_preload_libraries, say)."""

    def __init__(self, max_connections: int = 30, settings: dict[str, str] | None = None) -> None:
        super().__init__(max_connections=max_connections)
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 5\nwal_keep_size = '256MB'\n")
            for name, value in (settings or {}).items():
                conf.write(f"{name} = '{value}'\n")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")


class Replica(Cluster):
    """A hot standby of `primary`, made by pg_basebackup, on a free port of its own."""

    def __init__(self, primary: Primary) -> None:  # no initdb: the base backup is the cluster
        require_pg_basebackup()
        self.port = free_port()
        # A standby needs at least the primary's max_connections.
        self.max_connections = primary.max_connections
        self.folder = Path(tempfile.mkdtemp(prefix="graphile-replica-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.folder, _server_user(), _server_user())
        self._run([str(PG_BIN / "pg_basebackup"), "-D", str(self.data), "-h", "127.0.0.1",
                   "-p", str(primary.port), "-U", "postgres", "-R", "-X", "stream",
                   "--checkpoint=fast", "--no-sync"])  # fmt: skip

    def pause_replay(self) -> None:
        self.sql("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.sql("SELECT pg_wal_replay_resume()")

    def wait_until_replayed(self, primary: Primary, timeout: float = REPLAY_WAIT) -> None:
        """Wait until the replica has replayed everything the primary has written so far."""
        target = primary.sql("SELECT pg_current_wal_lsn()")[0][0]
        deadline = time.monotonic() + timeout
        while True:
            done = self.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])[0][0]
            if done:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the replica did not replay up to {target} in {timeout} s")
            time.sleep(0.05)


def start_pair(dbname: str, prepare=None, settings=None) -> tuple[Primary, Replica]:
    """A running primary with `dbname` (filled by `prepare(url)` before the backup, if given)
    and a running replica streaming from it, both with the server `settings` given. The caller
    destroys both."""
    primary = Primary(settings=settings)
    replica = None
    try:
        primary.start()
        primary.sql(f"CREATE DATABASE {dbname}")
        if prepare is not None:
            prepare(primary.url(dbname))
        replica = Replica(primary)
        replica.start()
        replica.wait_until_replayed(primary)
        return primary, replica
    except BaseException:
        if replica is not None:
            replica.destroy()
        primary.destroy()
        raise


def is_standby(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=START_TIMEOUT) as conn:
        return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def _up(dbname: str) -> None:
    # Started in the background, the process ignores SIGINT: stop it with SIGTERM (or Ctrl-C
    # in a terminal); either way both clusters are stopped and their folders removed.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.default_int_handler)
    primary, replica = start_pair(dbname)
    print(f"DATABASE_URL={primary.url(dbname)}")
    print(f"DATABASE_REPLICA_URL={replica.url(dbname)}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        replica.destroy()
        primary.destroy()


def _issue_token() -> None:
    """An API token for the fault tests' user, printed (run in the console's environment)."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from tests.faultdb import USERNAME
    from worker_admin.api import tokens

    user = get_user_model().objects.get(username=USERNAME)
    print(tokens.issue(user, name="replica tests", via="cli").secret)


if __name__ == "__main__":
    if sys.argv[1:2] == ["up"] and len(sys.argv) == 3:
        _up(sys.argv[2])
    elif sys.argv[1:2] == ["token"]:
        _issue_token()
    else:
        raise SystemExit("usage: python -m tests.replicadb up DBNAME | token")
