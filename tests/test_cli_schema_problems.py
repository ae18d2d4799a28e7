"""A schema the console cannot operate (missing, or graphile-worker 0.15's with `jobs` as a table):
every command but migrate answers with the sentence the web pages show and exit status 2, never
a traceback or a raw database error. Through call_command, `manage.py` and `graphile-console`
(subprocesses on a scratch database of their own, since pytest-django's rows are invisible to
another process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from psycopg import sql

from tests.test_cli_entry import _clean_env, _server_url
from worker_admin.schema import detect

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("graphile-console")
SCRATCH = f"graphile_console_schema_problems_{os.getpid()}"
LEGACY = "gw_legacy"  # graphile-worker 0.15 kept its jobs in a table called jobs
MISSING = "gw_never_installed"
COMMANDS = [
    ["stats"],
    ["list"],
    ["list", "--state", "failed"],
    ["queues"],
    ["show", "1"],
    ["workers"],
    ["add", "send_email"],
    ["complete", "1"],
    ["fail", "1", "--reason", "x"],
    ["reschedule", "1", "--now"],
    ["remove", "nightly"],
    ["cleanup"],
    ["force-unlock", "graphile_worker_dead"],
    ["sweep-stale-workers", "--dry-run"],
]


def _legacy_sql(schema: str) -> str:
    return f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.jobs (id bigserial primary key)"


@pytest.fixture(scope="module")
def scratch_url():
    admin = _server_url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(SCRATCH)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(SCRATCH)))
    url = _server_url(SCRATCH)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_legacy_sql(LEGACY))
    yield url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(SCRATCH)))


def _problem(schema: str) -> str:
    """The sentence the web pages show for this schema (worker_admin.schema)."""
    return detect("default", schema).problem


@pytest.fixture
def problems(db) -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(_legacy_sql(LEGACY))  # rolled back with the test's transaction
    sentences = {schema: _problem(schema) for schema in (LEGACY, MISSING)}
    assert sentences[LEGACY].startswith("Unsupported schema version")
    assert sentences[MISSING].startswith("There is no Graphile Worker schema")
    return sentences


@pytest.mark.parametrize("schema", [LEGACY, MISSING])
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_call_command__unusable_schema_is_one_sentence_exit_2(problems, schema, args):
    with pytest.raises(CommandError) as refused:
        call_command("graphile_worker", "--schema", schema, *args)

    assert (str(refused.value), refused.value.returncode) == (problems[schema], 2)


def _manage(url: str, schema: str, *args: str) -> subprocess.CompletedProcess:
    env = _clean_env(DATABASE_URL=url, SECRET_KEY="dev-only", GRAPHILE_WORKER_SCHEMA=schema)
    return subprocess.run(
        [sys.executable, "manage.py", "graphile_worker", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT,
        timeout=120,
    )


def _console(url: str, schema: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), "--database-url", url, "--schema", schema, *args],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd="/",
        timeout=120,
    )


@pytest.mark.parametrize("schema", [LEGACY, MISSING])
@pytest.mark.parametrize("args", [["stats"], ["list"], ["queues"], ["show", "1"], ["workers"]])
def test_manage_py__unusable_schema_is_one_sentence_exit_2(problems, scratch_url, schema, args):
    done = _manage(scratch_url, schema, *args)

    assert (done.returncode, done.stdout) == (2, "")
    # Django prefixes a command's error with its class name, as for UsageError on bad input.
    assert done.stderr == f"SchemaProblem: {problems[schema]}\n"


@pytest.mark.parametrize("schema", [LEGACY, MISSING])
@pytest.mark.parametrize(
    "args", [*COMMANDS[:6], ["add", "t"], ["sweep-stale-workers"]], ids=" ".join
)
def test_graphile_console__unusable_schema_is_one_sentence_exit_2(
    problems, scratch_url, schema, args
):
    done = _console(scratch_url, schema, *args)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"graphile-console: {problems[schema]}\n"


def test_graphile_console__migrate_still_installs_a_missing_schema(scratch_url):
    done = _console(scratch_url, "gw_installed_here", "migrate")
    assert done.returncode == 0, done.stderr
    assert _console(scratch_url, "gw_installed_here", "stats").returncode == 0
