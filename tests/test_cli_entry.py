"""The installed `graphile-console` script, run as a subprocess from outside the project folder.

Each test module gets a scratch database of its own (not pytest-django's, whose rows live in a
rolled-back transaction the subprocess could not see), set up by the script's own
`migrate --console-tables`. Assertions read that database back with psycopg.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.test_cli import ACTION_KEYS, JOB_ROW_KEYS, SWEEP_KEYS

# Builds its own connection strings: CI runs it on the embedded PostgreSQL too.
pytestmark = pytest.mark.embedded

SCRIPT = Path(sys.executable).with_name("graphile-console")
SCRATCH = f"graphile_console_cli_{os.getpid()}"


def _server_url(dbname: str) -> str:
    params = conninfo_to_dict(os.environ["DATABASE_URL"])
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="module")
def scratch_url():
    admin = _server_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(SCRATCH)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SCRATCH)))
    url = _server_url(SCRATCH)
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(SCRATCH)))


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY"}
        and not name.startswith("GRAPHILE_WORKER")
    }
    return {**env, **extra}


def run(*args: str, url: str | None = None, stdin: str | None = None, env=None, cwd=None):
    """Run the script; `url` goes in --database-url (None: leave it to the environment)."""
    argv = [str(SCRIPT), *(["--database-url", url] if url else []), *args]
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        env=env if env is not None else _clean_env(),
        cwd=cwd or "/",  # outside the project folder: only the installed package is importable
        timeout=120,
    )


def ok_json(*args: str, url: str, **kwargs):
    done = run("--json", *args, url=url, **kwargs)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def query(url: str, statement: str, params=()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement, params).fetchall()


@pytest.fixture(scope="module")
def installed(scratch_url):
    result = ok_json("migrate", "--console-tables", url=scratch_url)
    assert result["installed_core"] is True and result["console_tables"] is True
    assert result["flavour_after"] == "rust-recovery"
    return scratch_url


@pytest.fixture
def db_url(installed):
    """An empty queue and audit log for each test."""
    query_all = [
        "TRUNCATE graphile_worker._private_jobs, graphile_worker._private_tasks, "
        "graphile_worker._private_job_queues, graphile_worker._private_workers CASCADE",
        "DELETE FROM graphile_console.worker_admin_auditentry",
    ]
    with psycopg.connect(installed, autocommit=True) as conn:
        for statement in query_all:
            conn.execute(statement)
    return installed


def _audit(url: str) -> list[tuple]:
    return query(
        url,
        "SELECT action, outcome, via, actor_name FROM graphile_console.worker_admin_auditentry "
        "ORDER BY id",
    )


def _job_count(url: str) -> int:
    return query(url, "SELECT count(*) FROM graphile_worker._private_jobs")[0][0]


# -- every command, through the script ------------------------------------------------------


def test_add_list_show(db_url, tmp_path):
    payload = tmp_path / "payload.json"
    payload.write_text('{"to": "ops@example.com"}')
    added = ok_json(
        "add", "send_email", "--payload-file", str(payload), "--queue", "mail", url=db_url
    )
    assert added["identifier"] == "send_email" and added["queue_name"] == "mail"
    piped = ok_json(
        "add", "resize", "--payload-file", "-", "--priority", "3", url=db_url, stdin="[1]"
    )
    assert piped["priority"] == 3
    assert query(db_url, "SELECT payload FROM graphile_worker._private_jobs ORDER BY id") == [
        ({"to": "ops@example.com"},),
        ([1],),
    ]
    assert _audit(db_url) == [("add_job", "done", "cli", getpass.getuser())] * 2

    listing = ok_json("list", "--state", "ready", "--identifier", "send_email", url=db_url)
    assert set(listing) == {"jobs", "count", "limit", "offset"}
    assert [job["id"] for job in listing["jobs"]] == [added["id"]]
    assert set(listing["jobs"][0]) == JOB_ROW_KEYS

    shown = ok_json("show", str(added["id"]), url=db_url)
    assert shown["job"]["payload"] == {"to": "ops@example.com"}

    table = run("list", url=db_url)
    assert table.returncode == 0 and table.stdout.split()[:2] == ["id", "task_identifier"]


def test_complete_fail_reschedule_remove(db_url):
    ids = [ok_json("add", "t", url=db_url)["id"] for _ in range(3)]
    keyed = ok_json("add", "t", "--key", "nightly", url=db_url)["id"]

    completed = ok_json("complete", str(ids[0]), url=db_url)
    assert set(completed) == ACTION_KEYS and completed["changed"] == [ids[0]]
    failed = ok_json("fail", str(ids[1]), "--reason", "bad data", url=db_url)
    assert failed["changed"] == [ids[1]]
    moved = ok_json("reschedule", str(ids[2]), "--run-at", "2031-01-01T00:00:00Z", url=db_url)
    assert moved["changed"] == [ids[2]]
    removed = ok_json("remove", "nightly", url=db_url)
    assert removed["job_id"] == keyed

    rows = dict(query(db_url, "SELECT id, last_error FROM graphile_worker._private_jobs"))
    assert rows == {ids[1]: "bad data", ids[2]: None}
    run_at = query(
        db_url, "SELECT run_at FROM graphile_worker._private_jobs WHERE id = %s", [ids[2]]
    )
    assert run_at[0][0].year == 2031
    actions = [row[:2] for row in _audit(db_url)]
    assert actions[-4:] == [
        ("complete", "done"),
        ("fail", "done"),
        ("reschedule", "done"),
        ("remove", "done"),
    ]


def test_stats_queues_workers(db_url):
    ok_json("add", "send_email", "--queue", "mail", url=db_url)
    stats = ok_json("stats", url=db_url)
    assert stats["counts"]["ready"] == 1 and stats["exact"] is True
    queues = ok_json("queues", url=db_url)
    assert [row["queue_name"] for row in queues["queues"]] == ["mail"]
    workers = ok_json("workers", "--threshold", "10m", url=db_url)
    assert workers["threshold_seconds"] == 600 and workers["holders"] == []


def test_recovery_commands(db_url):
    job = ok_json("add", "t", url=db_url)["id"]
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO graphile_worker._private_workers (id, last_heartbeat_at) "
            "VALUES ('graphile_worker_dead', now() - interval '1 hour')"
        )
        conn.execute(
            "UPDATE graphile_worker._private_jobs SET locked_by = 'graphile_worker_dead', "
            "locked_at = now() - interval '1 hour' WHERE id = %s",
            [job],
        )
    dry = ok_json("sweep-stale-workers", "--sweep-threshold", "5m", "--dry-run", url=db_url)
    assert set(dry) == SWEEP_KEYS and [j["id"] for j in dry["jobs"]] == [job]
    unlocked = ok_json("force-unlock", "graphile_worker_dead", url=db_url)
    assert unlocked["jobs_unlocked"] == [job]
    assert query(db_url, "SELECT locked_by FROM graphile_worker._private_jobs") == [(None,)]
    ok_json("fail", str(job), "--reason", "gone", url=db_url)
    cleaned = ok_json("cleanup", "delete-permanently-failed-jobs", "--reason", "old", url=db_url)
    assert cleaned["deleted_job_ids"] == [job]
    assert _job_count(db_url) == 0


def test_demo_workers_refuse_a_real_queue(db_url):
    ok_json("add", "billing.reconcile_ledgers", url=db_url)  # not a demo task
    refused = run("demo-workers", "--duration", "0", url=db_url)
    assert refused.returncode == 1
    assert refused.stderr.startswith("graphile-console: ")


def test_schema_option_reads_and_writes_another_schema(db_url):
    other = ["--schema", "gw_cli_other"]
    ok_json(*other, "migrate", url=db_url)
    added = ok_json(*other, "add", "elsewhere", url=db_url)
    listed = ok_json(*other, "list", url=db_url)
    assert [job["id"] for job in listed["jobs"]] == [added["id"]]
    assert ok_json("list", url=db_url)["jobs"] == []  # the default schema is untouched
    env = _clean_env(DATABASE_URL=db_url, GRAPHILE_WORKER_SCHEMA="gw_cli_other")
    from_env = run("--json", "stats", env=env)
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout)["counts"]["ready"] == 1


# -- exit codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["list", "--state", "stuck"], None, "unknown state 'stuck'"),
        (["sweep-stale-workers", "--sweep-threshold", "5 parsecs"], None, "invalid duration"),
        (["add", "t", "--payload", "{'single': 'quotes'}"], None, "--payload is not valid JSON"),
        (["add", "t", "--payload-file", "-"], "<html>", "is not valid JSON"),
        (["complete"], None, "give at least one job id."),
        (["fail", "1; DROP TABLE jobs"], None, "invalid job id"),
        (["reschedule", "1"], None, "nothing to change"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(db_url, args, stdin, message):
    done = run(*args, url=db_url, stdin=stdin)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("graphile-console: ") and message.lower() in done.stderr.lower()
    assert len(done.stderr.strip().splitlines()) == 1
    assert _job_count(db_url) == 0
    assert all(outcome == "rejected" for _, outcome, _, _ in _audit(db_url))


def test_bad_usage_from_argparse_exits_2(db_url):
    for args in (["no-such-command"], ["list", "--limit", "many"], []):
        done = run(*args, url=db_url)
        assert done.returncode == 2, args
        assert "usage: graphile-console" in done.stderr


def test_failures_exit_1(db_url):
    missing = run("show", "999999", url=db_url)
    assert (missing.returncode, missing.stderr) == (
        1,
        "graphile-console: no job has the id 999999.\n",
    )

    closed_port = make_conninfo(host="127.0.0.1", port="1", dbname=SCRATCH, connect_timeout="5")
    unreachable = run("stats", url=closed_port)
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("graphile-console: cannot reach the database")


def test_no_database_configured_exits_2():
    done = run("stats")
    assert done.returncode == 2
    assert done.stderr == "graphile-console: give --database-url or set DATABASE_URL.\n"


def test_writes_refused_without_the_audit_log(db_url):
    """A database where only the worker schema exists: reads work, writes refuse, unaudited."""
    bare = f"{SCRATCH}_bare"
    admin = _server_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(bare)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(bare)))
    try:
        url = _server_url(bare)
        ok_json("migrate", url=url)
        assert ok_json("stats", url=url)["counts"]["ready"] == 0
        refused = run("add", "t", url=url)
        assert refused.returncode == 1
        assert "audit log is not installed" in refused.stderr
        assert _job_count(url) == 0
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(bare)))


def test_help_needs_no_database():
    done = run("--help")
    assert done.returncode == 0
    assert "--database-url" in done.stdout and "sweep-stale-workers" in done.stdout
