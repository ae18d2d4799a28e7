"""The embedded PostgreSQL's lifecycle, as a new user meets it: `manage.py` with no environment.

Each test points the commands at clusters in its own temporary folder (EMBEDDED_PGDATA,
EMBEDDED_TEST_PGDATA) and runs them as real processes, then looks for a `postgres` process
serving that folder: none may be left once a command has ended, whatever ended it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.faultdb import free_port

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


def servers_of(folder: Path) -> list[psutil.Process]:
    """The postmaster of a cluster in `folder` (its command line names the data folder)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and "-D" in cmdline and str(folder) in cmdline:
            found.append(process)
    return found


def no_environment(folder: Path) -> dict[str, str]:
    """What a fresh shell has: no DATABASE_URL, no SECRET_KEY, nothing of the test run."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "EMBEDDED_PGDATA": str(folder / "demo"),
        "EMBEDDED_TEST_PGDATA": str(folder / "tests"),
    }


def manage(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**no_environment(folder), **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def database_line(folder: Path, how: str) -> str:
    return f"Database: the embedded PostgreSQL in {folder / 'demo'} ({how}).\n"


# One pytest process: the nested run is about the server's lifecycle, not about speed.
NESTED_PYTEST = ["-p", "no:cacheprovider", "-n", "0"]
STARTED = "started for this command, stopped when it ends"


@pytest.fixture(scope="module")
def demo_once(tmp_path_factory) -> Path:
    """A checkout where `demo` has run once (a small seed, not served)."""
    folder = tmp_path_factory.mktemp("embedded")
    done = manage(folder, "demo", "--no-serve", "--jobs", "40")
    assert done.returncode == 0, done.stderr
    assert "Seeded 40 demo jobs" in done.stdout
    assert done.stderr == database_line(folder, STARTED)
    assert servers_of(folder / "demo") == []
    return folder


def test_embedded__help_starts_nothing(tmp_path):
    for args in (["demo", "--help"], ["console_user", "--help"], ["runtests", "--help"]):
        done = manage(tmp_path, *args)
        assert done.returncode == 0, done.stderr
        if args[0] == "demo":
            assert "--reset" in done.stdout and "--keep-db" in done.stdout
    assert not (tmp_path / "demo").exists() and not (tmp_path / "tests").exists()


def test_embedded__a_command_before_demo_says_what_to_do(tmp_path):
    done = manage(tmp_path, "console_user", "viewer1", "--role", "viewer")
    assert done.returncode == 1
    assert done.stderr == (
        "manage.py console_user: DATABASE_URL is not set and there is no embedded database yet: "
        "run `python3 manage.py demo` once, or set DATABASE_URL to your Graphile Worker "
        "database.\n"
    )
    assert not (tmp_path / "demo").exists()


def test_embedded__a_missing_secret_key_is_one_sentence(tmp_path):
    done = manage(tmp_path, "check", DATABASE_URL="host=/nowhere dbname=x")
    assert done.returncode == 1
    assert done.stderr == (
        "manage.py: SECRET_KEY is not set. Set SECRET_KEY (or DEBUG=1 for local development).\n"
    )


def test_embedded__console_user_right_after_demo(demo_once):
    done = manage(demo_once, "console_user", "viewer1", "--role", "viewer")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Created viewer1 as viewer with password ")
    assert done.stderr == database_line(demo_once, STARTED)
    assert servers_of(demo_once / "demo") == []
    # The same database as the demo's: its jobs are there.
    stats = manage(demo_once, "graphile_worker", "stats")
    assert stats.returncode == 0, stats.stderr
    assert "40" in stats.stdout
    assert servers_of(demo_once / "demo") == []


def test_embedded__keep_db_leaves_it_running_for_the_next_command(demo_once):
    kept = manage(demo_once, "console_user", "keeper", "--role", "operator", "--keep-db")
    assert kept.returncode == 0, kept.stderr
    assert len(servers_of(demo_once / "demo")) == 1
    # The next command uses it, then stops it: nothing is left behind by accident.
    done = manage(demo_once, "console_user", "keeper", "--role", "viewer")
    assert done.returncode == 0, done.stderr
    assert done.stderr == database_line(demo_once, "already running")
    assert servers_of(demo_once / "demo") == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_embedded__demo_stops_its_server_when_interrupted(demo_once, signum):
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=no_environment(demo_once),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/healthz", demo)
        assert len(servers_of(demo_once / "demo")) == 1
        demo.send_signal(signum)
        demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    output = demo.stdout.read()
    assert "Traceback" not in output, output
    assert servers_of(demo_once / "demo") == []


def test_embedded__demo_reset_starts_from_an_empty_database(demo_once):
    assert manage(demo_once, "console_user", "before_reset", "--role", "viewer").returncode == 0
    done = manage(demo_once, "demo", "--reset", "--no-serve", "--jobs", "40")
    assert done.returncode == 0, done.stderr
    assert "Emptied the embedded database postgres." in done.stdout
    assert "Seeded 40 demo jobs" in done.stdout  # not "already holds jobs"
    again = manage(demo_once, "console_user", "before_reset", "--role", "viewer")
    assert again.stdout.startswith("Created before_reset")  # the login went with the reset
    assert servers_of(demo_once / "demo") == []


def test_embedded__reset_refuses_a_database_url(tmp_path):
    done = manage(tmp_path, "demo", "--reset", "--no-serve", DATABASE_URL="host=/nowhere dbname=x")
    assert done.returncode == 1
    assert done.stderr == (
        "CommandError: --reset empties only the embedded demo database; with DATABASE_URL set, "
        "nothing was changed.\n"
    )


def test_embedded__runtests_stops_the_test_cluster(tmp_path):
    # Collecting is enough: the cluster is started before pytest runs and stopped after it.
    done = manage(tmp_path, "runtests", "tests/test_states.py", "--collect-only", *NESTED_PYTEST)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tests collected" in done.stdout
    assert done.stderr.startswith(
        f"Database: the embedded PostgreSQL in {tmp_path / 'tests'} ({STARTED})."
    )
    assert (tmp_path / "tests" / "PG_VERSION").exists()
    assert servers_of(tmp_path / "tests") == []


def test_embedded__runtests_stops_the_test_cluster_on_sigterm(tmp_path):
    runtests = subprocess.Popen(
        [sys.executable, "manage.py", "runtests", "tests/test_demo_fleet.py", *NESTED_PYTEST],
        cwd=ROOT,
        env=no_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not servers_of(tmp_path / "tests") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert servers_of(tmp_path / "tests"), "runtests never started the test cluster"
        time.sleep(2)  # well into pytest's run
        runtests.send_signal(signal.SIGTERM)
        runtests.wait(timeout=60)
    finally:
        if runtests.poll() is None:
            runtests.kill()
    assert servers_of(tmp_path / "tests") == []


def _wait_for_http(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the command ended early:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} never answered")


def test_embedded__the_test_cluster_trades_durability_for_speed(tmp_path):
    """.pgdata-tests is thrown away after the run, so nothing there needs to reach the disk."""
    import psycopg

    from dashboard import embedded

    folder = tmp_path / "tests"
    used = embedded.acquire(folder, tests=True)
    try:
        with psycopg.connect(used.conninfo) as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                    [["fsync", "full_page_writes", "synchronous_commit"]],
                ).fetchall()
            )
        assert settings == {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
        assert used.started_here and used.conninfo.startswith(f"host={folder} ")
    finally:
        assert embedded.release(folder) is True
    assert servers_of(folder) == []
