"""The schema installer, proven against the real graphile-worker npm package.

These tests use plain psycopg and scratch databases of their own on the server named by
DATABASE_URL (created with uuid-suffixed names, dropped afterwards); they use no Django database
fixture, so they run the same with and without pytest-django.

- Conformance: our migrate() and `graphile-worker --schema-only` (npm 0.18.0) produce the same
  catalog, a real Node worker finds our schema up to date and runs jobs on it. The catalog
  leaves function bodies out; tests/test_differential.py proves that they behave the same.
- The installer's contract: flavours, idempotence, refusals, the transaction and the lock.
- Semantics: every schema function, run on our schema AND on the real npm schema with the same
  assertions, so that ours provably behaves like upstream.
"""

from __future__ import annotations

import difflib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from tests.nodejs import install_real_schema, postgres_url, run_graphile_worker
from worker_admin import installer
from worker_admin.catalog_snapshot import catalog_snapshot
from worker_admin.installer import (
    MIGRATE_LOCK_KEYS,
    RECOVERY_FUNCTIONS,
    Flavour,
    MigrateResult,
    RecoveryUnsafeError,
    SchemaTooNewError,
    TransactionRequiredError,
    UnsupportedSchemaError,
    add_recovery,
    detect_flavour,
    migrate,
    quote_schema,
)

# Builds its own connection strings: CI runs it on the embedded PostgreSQL too.
pytestmark = pytest.mark.embedded

SCHEMA = "graphile_worker"
BREAKING_MIGRATIONS = {1, 3, 11, 13, 14, 16, 19}
RECOVERY_RELATIONS = {
    "_private_workers": "table",
    "_private_workers_pkey": "index",
    "_private_workers_last_heartbeat_at_idx": "index",
}
LEGACY_MESSAGE = (
    "unsupported schema version: graphile_worker.jobs is a table (graphile-worker 0.15 or older); "
    "upgrade it with graphile-worker 0.16+ first"
)

Conninfo = dict[str, Any]


# --- scratch databases -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def server() -> Conninfo:
    """Connection parameters of the PostgreSQL server the scratch databases are created on."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        message = "DATABASE_URL is not set; the installer tests need a PostgreSQL server"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Scratch databases are created from the maintenance database: the one named in the URL
    # may not exist (pytest-django works in its own test_<name> database).
    return {**conninfo_to_dict(url), "dbname": "postgres"}


@contextmanager
def scratch_database(server: Conninfo) -> Iterator[Conninfo]:
    """Create an empty database (from template0) and drop it afterwards, even after a failure."""
    name = f"gw_installer_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(make_conninfo(**server), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template template0").format(sql.Identifier(name)))
    try:
        yield {**server, "dbname": name}
    finally:
        with psycopg.connect(make_conninfo(**server), autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture
def make_db(server: Conninfo) -> Iterator[Callable[[], Conninfo]]:
    """A factory of scratch databases that all disappear when the test ends."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(scratch_database(server))


def connect(info: Conninfo, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(make_conninfo(**info), **kwargs)


def install_ours(info: Conninfo, schema: str = SCHEMA, *, recovery: bool = True) -> MigrateResult:
    with connect(info) as conn, conn.cursor() as cur:
        return migrate(cur, schema, recovery=recovery)  # committed by the with block


def install_npm(info: Conninfo, schema: str = SCHEMA, *, version: str | None = None) -> None:
    install_real_schema(postgres_url(info), schema, version=version)


def snapshot(info: Conninfo, schema: str = SCHEMA) -> dict[str, Any]:
    with connect(info) as conn, conn.cursor() as cur:
        return catalog_snapshot(cur, schema)


def flavour(info: Conninfo, schema: str = SCHEMA) -> Flavour:
    with connect(info) as conn, conn.cursor() as cur:
        return detect_flavour(cur, schema)


def snapshot_diff(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    """A unified diff of two catalog snapshots, readable in a test failure."""
    return "\n".join(
        difflib.unified_diff(
            json.dumps(expected, indent=2, sort_keys=True).splitlines(),
            json.dumps(actual, indent=2, sort_keys=True).splitlines(),
            "real npm graphile-worker",
            "ours",
            lineterm="",
        )
    )


def assert_same_catalog(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    if expected != actual:
        print(snapshot_diff(expected, actual))
    assert actual == expected


def migrations(info: Conninfo, schema: str = SCHEMA) -> list[tuple[Any, ...]]:
    with connect(info) as conn:
        query = sql.SQL("select id, breaking, ts from {}.migrations order by id").format(
            sql.Identifier(schema)
        )
        return conn.execute(query).fetchall()


# --- conformance with the real npm package ---------------------------------------------------


@pytest.mark.node
@pytest.mark.parametrize("schema", [SCHEMA, "gw_custom"])
def test_migrate__matches_real_npm_schema(make_db: Callable[[], Conninfo], schema: str) -> None:
    """The catalog, function bodies excepted (their behaviour: tests/test_differential.py)."""
    ours, real = make_db(), make_db()
    install_ours(ours, schema, recovery=False)
    install_npm(real, schema)

    assert_same_catalog(snapshot(real, schema), snapshot(ours, schema))
    assert [row[:2] for row in migrations(ours, schema)] == [
        row[:2] for row in migrations(real, schema)
    ]
    assert [row[:2] for row in migrations(ours, schema)] == [
        (n, n in BREAKING_MIGRATIONS) for n in range(1, 21)
    ]


@pytest.mark.node
def test_migrate__real_node_runner_finds_nothing_to_migrate(
    make_db: Callable[[], Conninfo],
) -> None:
    ours = make_db()
    install_ours(ours, "gw_custom")
    before = (snapshot(ours, "gw_custom"), migrations(ours, "gw_custom"))

    install_real_schema(postgres_url(ours), "gw_custom")

    assert (snapshot(ours, "gw_custom"), migrations(ours, "gw_custom")) == before


@pytest.mark.node
def test_node_worker__runs_jobs_on_our_schema(
    make_db: Callable[[], Conninfo], tmp_path: Path
) -> None:
    """A real Node worker fetches, completes and fails jobs on our schema, and its helpers call
    our add_job."""
    ours = make_db()
    install_ours(ours)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "first.cjs").write_text(
        "module.exports = async (payload, helpers) => {\n"
        '  await helpers.addJob("second", { from: payload.n },'
        ' { jobKey: "k-second", queueName: "q1", flags: ["f1"] });\n'
        "};\n"
    )
    (tasks / "second.cjs").write_text(
        "module.exports = async (payload, helpers) => {\n"
        '  helpers.logger.info("second ran with " + JSON.stringify(payload));\n'
        "};\n"
    )
    (tasks / "boom.cjs").write_text('module.exports = async () => { throw new Error("boom"); };\n')
    with connect(ours) as conn:
        conn.execute("select graphile_worker.add_job('first', '{\"n\": 1}')")
        conn.execute("select graphile_worker.add_job('boom', max_attempts => 3)")

    result = run_graphile_worker(postgres_url(ours), SCHEMA, ["--once"], cwd=tmp_path)

    assert 'second ran with {"from":1}' in result.stdout + result.stderr
    with connect(ours, row_factory=dict_row) as conn:
        left = conn.execute(
            "select task_identifier, attempts, max_attempts, last_error, locked_at,"
            " run_at > now() as retry_later from graphile_worker.jobs"
        ).fetchall()
    assert left == [
        {
            "task_identifier": "boom",
            "attempts": 1,
            "max_attempts": 3,
            "last_error": "boom",
            "locked_at": None,
            "retry_later": True,
        }
    ]


@pytest.mark.node
def test_add_recovery__adds_exactly_the_recovery_objects_to_a_real_npm_schema(
    make_db: Callable[[], Conninfo],
) -> None:
    real, ours = make_db(), make_db()
    install_npm(real)
    install_ours(ours, recovery=True)
    before = snapshot(real)

    with connect(real) as conn, conn.cursor() as cur:
        assert detect_flavour(cur, SCHEMA) is Flavour.NODE
        assert add_recovery(cur, SCHEMA) is True
        assert detect_flavour(cur, SCHEMA) is Flavour.RUST_RECOVERY
    after = snapshot(real)
    with connect(real) as conn, conn.cursor() as cur:
        assert add_recovery(cur, SCHEMA) is False

    assert_same_catalog(after, snapshot(ours))
    assert snapshot(real) == after
    added_relations = {
        name: kind for name, kind in after["relations"].items() if name not in before["relations"]
    }
    added_functions = sorted(
        entry["name"] for key, entry in after["functions"].items() if key not in before["functions"]
    )
    assert (added_relations, added_functions, set(after["tables"]) - set(before["tables"])) == (
        RECOVERY_RELATIONS,
        sorted(RECOVERY_FUNCTIONS),
        {"_private_workers"},
    )
    assert {k: v for k, v in after["tables"].items() if k != "_private_workers"} == before["tables"]


@pytest.mark.node
def test_migrate__on_real_npm_schema_adds_recovery_only_when_asked(
    make_db: Callable[[], Conninfo],
) -> None:
    real = make_db()
    install_npm(real)
    before = snapshot(real)

    assert install_ours(real, recovery=False) == MigrateResult(
        Flavour.NODE, Flavour.NODE, installed_core=False, added_recovery=False
    )
    assert snapshot(real) == before
    assert install_ours(real, recovery=True) == MigrateResult(
        Flavour.NODE, Flavour.RUST_RECOVERY, installed_core=False, added_recovery=True
    )


def recovery_refusal(highest: int) -> str:
    return (
        f"cannot add the worker-recovery objects to graphile_worker: its highest migration is "
        f"{highest} (installed by graphile-worker 0.16 or 0.17), so the Rust runner would still "
        f"apply its own migration 20 there and fail on the objects already being present; "
        f"upgrade the schema with graphile-worker 0.18 first (graphile-worker --schema-only) and "
        f"add them then, or let the Rust runner migrate it, which adds them itself"
    )


@pytest.mark.node
@pytest.mark.parametrize(("version", "highest"), [("0.16.6", 18), ("0.17.3", 19)])
def test_add_recovery__refused_on_a_real_0_16_or_0_17_schema_until_0_18_upgrades_it(
    make_db: Callable[[], Conninfo], version: str, highest: int
) -> None:
    """Issue 12, item 3: below Node's migration 20 the Rust runner still runs its own migration
    20 (create table _private_workers, no IF NOT EXISTS), so neither --add-recovery nor plain
    migrate may add the objects first; after graphile-worker 0.18.0 upgraded it, both may."""
    info, fresh = make_db(), make_db()
    install_npm(info, version=version)
    before = (snapshot(info), migrations(info))
    assert (flavour(info), max(row[0] for row in before[1])) == (Flavour.NODE, highest)

    with connect(info) as conn, conn.cursor() as cur, pytest.raises(RecoveryUnsafeError) as raised:
        add_recovery(cur, SCHEMA)
    assert str(raised.value) == recovery_refusal(highest)
    with pytest.raises(RecoveryUnsafeError):
        install_ours(info, recovery=True)
    assert install_ours(info, recovery=False) == MigrateResult(
        Flavour.NODE, Flavour.NODE, installed_core=False, added_recovery=False
    )
    assert (snapshot(info), migrations(info)) == before

    install_npm(info)  # graphile-worker 0.18.0 upgrades it to migration 20
    assert install_ours(info, recovery=True).added_recovery is True
    install_ours(fresh, recovery=True)
    assert_same_catalog(snapshot(fresh), snapshot(info))


@pytest.mark.node
def test_add_recovery__an_old_console_s_mistake_is_repaired_by_0_18(
    make_db: Callable[[], Conninfo],
) -> None:
    """Before the refusal, the console added recovery to 0.17 databases. graphile-worker 0.18.0
    then migrates such a database without error and records migration 20, after which the Rust
    runner no longer runs its own migration 20 (the remedy in docs/schema.md)."""
    info = make_db()
    install_npm(info, version="0.17.3")
    with connect(info) as conn, conn.cursor() as cur:
        installer._run_sql_file(cur, "recovery.sql", SCHEMA)  # what the old console did
    recovery_before = {
        key: value
        for key, value in snapshot(info)["functions"].items()
        if value["name"] in RECOVERY_FUNCTIONS
    }

    install_npm(info)

    assert flavour(info) is Flavour.RUST_RECOVERY
    assert max(row[0] for row in migrations(info)) == 20
    assert {
        key: value
        for key, value in snapshot(info)["functions"].items()
        if value["name"] in RECOVERY_FUNCTIONS
    } == recovery_before


def test_add_recovery__completes_a_partly_added_extension_below_migration_20(
    make_db: Callable[[], Conninfo],
) -> None:
    """_private_workers already exists (we or the Rust runner put it there): the runner's
    migration 20 is not prevented by completing the functions, so it is allowed."""
    info = make_db()
    install_ours(info, recovery=True)
    with connect(info) as conn:
        conn.execute("delete from graphile_worker.migrations where id = 20")
        conn.execute("drop function graphile_worker.worker_heartbeat")
    assert flavour(info) is Flavour.NODE

    with connect(info) as conn, conn.cursor() as cur:
        assert add_recovery(cur, SCHEMA) is True
    assert flavour(info) is Flavour.RUST_RECOVERY


@pytest.mark.node
def test_catalog_snapshot__detects_a_deliberate_difference(
    make_db: Callable[[], Conninfo],
) -> None:
    ours, real = make_db(), make_db()
    install_ours(ours, recovery=False)
    install_npm(real)
    assert snapshot(ours) == snapshot(real)

    with connect(ours) as conn:
        conn.execute(
            "alter table graphile_worker._private_jobs alter column max_attempts set default 5"
        )

    expected, actual = snapshot(real), snapshot(ours)
    assert actual != expected
    changed = [
        line[0] + line[1:].strip()
        for line in snapshot_diff(expected, actual).splitlines()
        if line[:1] in "+-" and not line.startswith(("---", "+++"))
    ]
    assert changed == ['-"default": "25",', '+"default": "5",']


# --- identity values: an add of an existing task or queue draws none (issue 12, item 1) -----

# The same adds for both schemas: three tasks, two queues, every key mode and a batch that
# mixes existing and new names; each existing name comes back many times.
REPEATED_ADDS = [
    "select graphile_worker.add_job('t1', queue_name => 'q1')",
    "select graphile_worker.add_job('t1', queue_name => 'q1', job_key => 'k1')",
    "select graphile_worker.add_job('t1', queue_name => 'q1', job_key => 'k1')",
    "select graphile_worker.add_job('t1', job_key => 'k1', job_key_mode => 'preserve_run_at')",
    "select graphile_worker.add_job('t2', queue_name => 'q1', job_key => 'k1',"
    " job_key_mode => 'unsafe_dedupe')",
    "select graphile_worker.add_job('t2', queue_name => 'q2', job_key => 'k2',"
    " job_key_mode => 'unsafe_dedupe')",
    "select graphile_worker.add_jobs(array["
    "  row('t1', null, 'q1', null, null, null, null, null),"
    "  row('t2', null, 'q2', null, null, 'k1', null, null),"
    "  row('t3', null, 'q2', null, null, null, null, null)]::graphile_worker.job_spec[])",
    "select graphile_worker.add_jobs(array["
    "  row('t3', null, 'q1', null, null, 'k3', null, null),"
    "  row('t3', null, 'q1', null, null, null, null, null)]::graphile_worker.job_spec[], true)",
    *["select graphile_worker.add_job('t3', queue_name => 'q2')"] * 5,
]


def sequence_values(info: Conninfo) -> dict[str, int | None]:
    with connect(info) as conn:
        rows = conn.execute(
            "select sequencename::text, last_value from pg_catalog.pg_sequences"
            " where schemaname = 'graphile_worker' order by 1"
        ).fetchall()
    return dict(rows)


@pytest.mark.node
def test_add_job__existing_names_take_no_identity_value_like_npm(
    make_db: Callable[[], Conninfo],
) -> None:
    ours, real = make_db(), make_db()
    install_ours(ours, recovery=False)
    install_npm(real)
    for info in (ours, real):
        with connect(info) as conn:
            for statement in REPEATED_ADDS:
                conn.execute(statement)

    assert sequence_values(ours) == sequence_values(real)
    assert sequence_values(ours) == {
        "job_queues_id_seq": 2,
        "jobs_id_seq1": 16,  # every add draws a job id, even one that only updates a keyed job
        "tasks_id_seq": 3,
    }


@pytest.mark.parametrize("installer", ["ours", pytest.param("npm", marks=pytest.mark.node)])
def test_add_job__existing_names_work_with_the_sequences_near_their_maximum(
    make_db: Callable[[], Conninfo], installer: str
) -> None:
    """Near 2**31 - 1 an add that drew an identity value for an existing name would fail with
    "nextval: reached maximum value"; ten adds of an existing task and queue must all work."""
    info = make_db()
    install_ours(info, recovery=False) if installer == "ours" else install_npm(info)
    with connect(info) as conn:
        for sequence in ("tasks_id_seq", "job_queues_id_seq"):
            conn.execute("select setval(%s, 2147483647 - 1)", [f"graphile_worker.{sequence}"])
        conn.execute("select graphile_worker.add_job('t', queue_name => 'q')")
        for n in range(10):
            conn.execute(
                "select graphile_worker.add_job('t', queue_name => 'q', job_key => %s,"
                " job_key_mode => %s)",
                [f"k{n % 3}", ("replace", "preserve_run_at", "unsafe_dedupe")[n % 3]],
            )
            conn.execute(
                "select graphile_worker.add_jobs(array[row('t', null, 'q', null, null, null,"
                " null, null)]::graphile_worker.job_spec[])"
            )
        ids = conn.execute(
            "select distinct task_id, job_queue_id from graphile_worker._private_jobs"
        ).fetchall()

    assert ids == [(2147483647, 2147483647)]


@pytest.mark.parametrize("installer", ["ours", pytest.param("npm", marks=pytest.mark.node)])
@pytest.mark.parametrize("batch", [False, True])
def test_add_job__racing_adds_of_a_new_task_and_queue_share_one_row(
    make_db: Callable[[], Conninfo], installer: str, batch: bool
) -> None:
    """The look-up-first insert stays safe when two sessions add the same new names at once:
    the second waits for the first's row, then uses it (no error, one row each)."""
    info = make_db()
    install_ours(info, recovery=False) if installer == "ours" else install_npm(info)
    add = (
        "select task_id, job_queue_id from graphile_worker.add_jobs(array[row('new_task', null,"
        " 'new_queue', null, null, null, null, null)]::graphile_worker.job_spec[])"
        if batch
        else "select task_id, job_queue_id from graphile_worker.add_job('new_task',"
        " queue_name => 'new_queue')"
    )
    seen: list[Any] = []
    with connect(info) as first, connect(info) as second:
        seen.append(first.execute(add).fetchone())  # its transaction stays open

        def second_add() -> None:
            seen.append(second.execute(add).fetchone())
            second.commit()

        thread = threading.Thread(target=second_add)
        thread.start()
        _wait_for_a_lock_waiter(info)
        first.commit()
        thread.join(10)

    assert seen == [(1, 1), (1, 1)]
    with connect(info) as conn:
        assert conn.execute(
            "select (select count(*) from graphile_worker._private_tasks),"
            " (select count(*) from graphile_worker._private_job_queues)"
        ).fetchone() == (1, 1)


def _wait_for_a_lock_waiter(info: Conninfo) -> None:
    deadline = time.monotonic() + 10
    with connect(info, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                " and datname = current_database()"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    pytest.fail("the second add never waited for the first one's row")


# --- the installer's contract ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("graphile_worker", '"graphile_worker"'),
        ("Mixed Case", '"Mixed Case"'),
        ('say "hi"', '"say ""hi"""'),
        ("x" * 63, '"' + "x" * 63 + '"'),
        ("é" * 31, '"' + "é" * 31 + '"'),
    ],
)
def test_quote_schema__quotes_valid_names(name: str, quoted: str) -> None:
    assert quote_schema(name) == quoted


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("x" * 64, "is 64 bytes long"),
        ("é" * 32, "is 64 bytes long"),
        ("a\x00b", "NUL"),
    ],
)
def test_quote_schema__rejects_invalid_names(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        quote_schema(name)


def test_detect_flavour__absent_when_schema_missing_or_empty(
    make_db: Callable[[], Conninfo],
) -> None:
    info = make_db()
    assert flavour(info) is Flavour.ABSENT
    with connect(info) as conn:
        conn.execute("create schema graphile_worker")
    assert flavour(info) is Flavour.ABSENT


def test_migrate__installs_core_and_recovery(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()

    result = install_ours(info)

    assert result == MigrateResult(
        Flavour.ABSENT, Flavour.RUST_RECOVERY, installed_core=True, added_recovery=True
    )
    catalog = snapshot(info)
    assert {name: catalog["relations"].get(name) for name in RECOVERY_RELATIONS} == (
        RECOVERY_RELATIONS
    )
    assert sorted(
        entry["name"]
        for entry in catalog["functions"].values()
        if entry["name"] in RECOVERY_FUNCTIONS
    ) == sorted(RECOVERY_FUNCTIONS)
    assert catalog["tables"]["_private_workers"]["row_security"] is False
    assert {name: t["row_security"] for name, t in catalog["tables"].items()} == {
        "_private_job_queues": True,
        "_private_jobs": True,
        "_private_known_crontabs": True,
        "_private_tasks": True,
        "_private_workers": False,
        "migrations": False,
    }


def test_migrate__into_existing_empty_schema(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()
    with connect(info) as conn:
        conn.execute("create schema graphile_worker")

    assert install_ours(info, recovery=False) == MigrateResult(
        Flavour.ABSENT, Flavour.NODE, installed_core=True, added_recovery=False
    )


def test_migrate__second_run_is_a_no_op(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()
    install_ours(info)
    before = (snapshot(info), migrations(info))

    result = install_ours(info)

    assert result == MigrateResult(
        Flavour.RUST_RECOVERY, Flavour.RUST_RECOVERY, installed_core=False, added_recovery=False
    )
    assert (snapshot(info), migrations(info)) == before


def test_migrate__recovery_can_be_added_later(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()
    install_ours(info, recovery=False)
    core_only = snapshot(info)

    with connect(info) as conn, conn.cursor() as cur:
        assert add_recovery(cur, SCHEMA) is True
    with connect(info) as conn, conn.cursor() as cur:
        assert add_recovery(cur, SCHEMA) is False
    full = snapshot(info)

    other = make_db()
    install_ours(other, recovery=True)
    assert full == snapshot(other)
    assert set(full["relations"]) - set(core_only["relations"]) == set(RECOVERY_RELATIONS)


def test_migrate__refuses_legacy_schema(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()
    with connect(info) as conn:
        conn.execute("create schema graphile_worker")
        conn.execute(
            "create table graphile_worker.jobs (id bigserial primary key, task_identifier text)"
        )
        conn.execute("create table graphile_worker.migrations (id int primary key)")
    before = snapshot(info)

    with connect(info) as conn, conn.cursor() as cur:
        assert detect_flavour(cur, SCHEMA) is Flavour.LEGACY
        with pytest.raises(UnsupportedSchemaError) as raised:
            migrate(cur, SCHEMA)
        assert str(raised.value) == LEGACY_MESSAGE
        # Checked inside the same transaction: nothing was created before the refusal.
        assert catalog_snapshot(cur, SCHEMA) == before
        with pytest.raises(UnsupportedSchemaError, match=r"^unsupported schema version: "):
            add_recovery(cur, SCHEMA)
        assert catalog_snapshot(cur, SCHEMA) == before


@pytest.mark.parametrize("recovery", [True, False])
def test_migrate__refuses_a_newer_breaking_migration(
    make_db: Callable[[], Conninfo], recovery: bool
) -> None:
    """Like the Node and Rust runners: a breaking migration above 20 means a newer release
    migrated the database (issue 12, item 7); nothing is changed."""
    info = make_db()
    install_ours(info, recovery=False)
    with connect(info) as conn:
        conn.execute("insert into graphile_worker.migrations (id, breaking) values (21, false)")
        conn.execute("insert into graphile_worker.migrations (id, breaking) values (22, true)")
        conn.execute("insert into graphile_worker.migrations (id, breaking) values (23, false)")
    before = snapshot(info)

    message = (
        "database is more up to date than this installer: graphile_worker.migrations holds "
        "breaking migration 22, and this installer knows migrations up to 20 (graphile-worker "
        "0.18.0); upgrade the console, or migrate with the graphile-worker release that wrote "
        "migration 22"
    )
    with pytest.raises(SchemaTooNewError) as raised:
        install_ours(info, recovery=recovery)
    assert str(raised.value) == message
    with connect(info) as conn, conn.cursor() as cur, pytest.raises(SchemaTooNewError):
        add_recovery(cur, SCHEMA)
    assert snapshot(info) == before


def test_migrate__accepts_a_newer_migration_that_is_not_breaking(
    make_db: Callable[[], Conninfo],
) -> None:
    info = make_db()
    install_ours(info, recovery=False)
    with connect(info) as conn:
        conn.execute("insert into graphile_worker.migrations (id, breaking) values (21, false)")

    assert install_ours(info).added_recovery is True


def test_add_recovery__refuses_absent_schema(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()
    with connect(info) as conn, conn.cursor() as cur:
        with pytest.raises(UnsupportedSchemaError, match="has no Graphile Worker tables"):
            add_recovery(cur, SCHEMA)
        assert detect_flavour(cur, SCHEMA) is Flavour.ABSENT


def test_migrate__refuses_to_install_over_clashing_objects(
    make_db: Callable[[], Conninfo],
) -> None:
    """An interrupted Node install leaves a lone migrations table: say so, do not crash."""
    info = make_db()
    with connect(info) as conn:
        conn.execute("create schema graphile_worker")
        conn.execute("create table graphile_worker.migrations (id int primary key)")

    with (
        connect(info) as conn,
        conn.cursor() as cur,
        pytest.raises(UnsupportedSchemaError, match=r"objects the installer would create"),
    ):
        migrate(cur, SCHEMA)
    assert set(snapshot(info)["relations"]) == {"migrations", "migrations_pkey"}


def test_migrate__requires_a_transaction(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()
    with connect(info, autocommit=True) as conn, conn.cursor() as cur:
        with pytest.raises(TransactionRequiredError, match="inside one transaction"):
            migrate(cur, SCHEMA)
        with pytest.raises(TransactionRequiredError):
            add_recovery(cur, SCHEMA)
    assert flavour(info) is Flavour.ABSENT


def test_migrate__works_inside_an_explicit_transaction_block(
    make_db: Callable[[], Conninfo],
) -> None:
    info = make_db()
    with connect(info, autocommit=True) as conn:
        with conn.transaction(), conn.cursor() as cur:
            result = migrate(cur, SCHEMA)
        assert result.installed_core
    assert flavour(info) is Flavour.RUST_RECOVERY


def test_migrate__accepts_a_dict_row_cursor(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()
    with connect(info, row_factory=dict_row) as conn, conn.cursor() as cur:
        result = migrate(cur, SCHEMA)
        assert catalog_snapshot(cur, SCHEMA)["tables"]["_private_jobs"]["row_security"] is True
    assert result.flavour_after is Flavour.RUST_RECOVERY


def test_migrate__concurrent_calls_serialise(make_db: Callable[[], Conninfo]) -> None:
    info = make_db()
    outcome: dict[str, Any] = {}

    def second_migrate() -> None:
        with connect(info) as conn, conn.cursor() as cur:
            outcome["second"] = migrate(cur, SCHEMA)

    with connect(info) as first, first.cursor() as cur:
        outcome["first"] = migrate(cur, SCHEMA)
        thread = threading.Thread(target=second_migrate)
        thread.start()
        _wait_for_advisory_lock_waiter(info)
        assert thread.is_alive()
        first.commit()
    thread.join(timeout=30)

    assert outcome == {
        "first": MigrateResult(Flavour.ABSENT, Flavour.RUST_RECOVERY, True, True),
        "second": MigrateResult(Flavour.RUST_RECOVERY, Flavour.RUST_RECOVERY, False, False),
    }


def _wait_for_advisory_lock_waiter(info: Conninfo) -> None:
    key1, key2 = MIGRATE_LOCK_KEYS
    deadline = time.monotonic() + 10
    with connect(info, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "select count(*) from pg_locks where locktype = 'advisory' and not granted"
                " and classid = %s and objid = %s and objsubid = 2",
                [key1, key2],
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    pytest.fail("the second migrate never waited for the advisory lock")


def test_migrate__handles_a_schema_name_that_needs_quoting(
    make_db: Callable[[], Conninfo],
) -> None:
    """Quotes, spaces, a newline and the body's dollar-quote tag in the name change nothing."""
    odd = 'Odd "name" $body$\n-- x'
    info = make_db()

    install_ours(info, odd)

    plain = make_db()
    install_ours(plain)
    assert snapshot(info, odd) == snapshot(plain)
    with connect(info, row_factory=dict_row) as conn:
        qualified = sql.Identifier(odd)
        job = conn.execute(
            sql.SQL("select * from {}.add_job('t', job_key => 'k')").format(qualified)
        ).fetchone()
        removed = conn.execute(
            sql.SQL("select * from {}.remove_job('k')").format(qualified)
        ).fetchone()
    assert job is not None and removed is not None
    assert removed["id"] == job["id"]


def test_catalog_snapshot__ignores_search_path_and_restores_it(
    make_db: Callable[[], Conninfo],
) -> None:
    info = make_db()
    install_ours(info)
    reference = snapshot(info)
    with connect(info) as conn, conn.cursor() as cur:
        cur.execute("set search_path = graphile_worker, public")
        assert catalog_snapshot(cur, SCHEMA) == reference
        cur.execute("show search_path")
        assert cur.fetchone() == ("graphile_worker, public",)
    json.dumps(reference)  # JSON-able
    assert "<schema>.job_spec[]" in json.dumps(reference)
    assert "graphile_worker" not in json.dumps(reference)


# --- semantics of the schema functions, on our schema and on the real npm schema ------------


@pytest.fixture(scope="module", params=["ours", pytest.param("npm", marks=pytest.mark.node)])
def function_db(request: pytest.FixtureRequest, server: Conninfo) -> Iterator[Conninfo]:
    """One database per flavour and module: ours (migrate) or npm (+ our recovery extension)."""
    with scratch_database(server) as info:
        if request.param == "ours":
            install_ours(info)
        else:
            install_npm(info)
            with connect(info) as conn, conn.cursor() as cur:
                add_recovery(cur, SCHEMA)
        yield info


@dataclass
class Db:
    """A connection in an open transaction (rolled back after the test), with small helpers."""

    conn: psycopg.Connection[dict[str, Any]]
    info: Conninfo

    def rows(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        return self.conn.execute(query, params).fetchall()

    def row(self, query: str, params: Any = None) -> dict[str, Any]:
        result = self.conn.execute(query, params).fetchone()
        assert result is not None
        return result

    def value(self, query: str, params: Any = None) -> Any:
        return next(iter(self.row(query, params).values()))

    def now(self) -> datetime:
        return self.value("select now()")

    def job(self, job_id: int) -> dict[str, Any] | None:
        return self.conn.execute(
            "select * from graphile_worker._private_jobs where id = %s", [job_id]
        ).fetchone()

    def jobs(self) -> list[dict[str, Any]]:
        return self.rows("select * from graphile_worker._private_jobs order by id")

    def lock(self, job_id: int, worker: str, age: str) -> None:
        self.conn.execute(
            "update graphile_worker._private_jobs"
            " set locked_at = now() - %s::interval, locked_by = %s where id = %s",
            [age, worker, job_id],
        )

    def task(self, task_id: int) -> str:
        return self.value(
            "select identifier from graphile_worker._private_tasks where id = %s", [task_id]
        )

    def queue(self, queue_id: int | None) -> str | None:
        if queue_id is None:
            return None
        return self.value(
            "select queue_name from graphile_worker._private_job_queues where id = %s", [queue_id]
        )


@pytest.fixture
def db(function_db: Conninfo) -> Iterator[Db]:
    with connect(function_db, autocommit=True) as conn:
        conn.execute(
            "truncate graphile_worker._private_jobs, graphile_worker._private_job_queues,"
            " graphile_worker._private_tasks, graphile_worker._private_workers"
        )
    with connect(function_db, row_factory=dict_row) as conn:
        yield Db(conn, function_db)
        conn.rollback()


@pytest.fixture
def listener(function_db: Conninfo) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Collect the jobs:insert notifications committed since the listener started."""
    with connect(function_db, autocommit=True) as conn:
        conn.execute('listen "jobs:insert"')

        def received() -> list[dict[str, Any]]:
            return [json.loads(n.payload) for n in conn.notifies(timeout=0.5)]

        yield received


def pick(row: dict[str, Any] | None, *names: str) -> dict[str, Any] | None:
    return None if row is None else {name: row[name] for name in names}


STATE = ("key", "attempts", "max_attempts", "last_error", "locked_by", "revision")


def counts(notes: list[dict[str, Any]]) -> list[int]:
    assert all(0 <= note["r"] < 1 for note in notes)
    return [note["count"] for note in notes]


def test_add_job__defaults(db: Db) -> None:
    job = db.row("select * from graphile_worker.add_job('send_email')")
    now = db.now()

    assert {**job, "id": None, "task_id": db.task(job["task_id"])} == {
        "id": None,
        "job_queue_id": None,
        "task_id": "send_email",
        "payload": {},
        "priority": 0,
        "run_at": now,
        "attempts": 0,
        "max_attempts": 25,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "key": None,
        "locked_at": None,
        "locked_by": None,
        "revision": 0,
        "flags": None,
        "is_available": True,
    }


def test_add_job__stores_every_argument(db: Db) -> None:
    job = db.row(
        "select * from graphile_worker.add_job('t', '{\"a\": 1}', 'q1',"
        " now() + interval '1 hour', 3, 'k1', 5, array['f1', 'f2'])"
    )

    assert pick(job, "payload", "priority", "run_at", "max_attempts", "key", "flags") == {
        "payload": {"a": 1},
        "priority": 5,
        "run_at": db.now() + timedelta(hours=1),
        "max_attempts": 3,
        "key": "k1",
        "flags": {"f1": True, "f2": True},
    }
    assert (db.task(job["task_id"]), db.queue(job["job_queue_id"])) == ("t", "q1")


def test_add_job__empty_flags_are_null(db: Db) -> None:
    job = db.row("select * from graphile_worker.add_job('t', flags => array[]::text[])")
    assert job["flags"] is None


def test_add_job__creates_missing_task_and_queue_once(db: Db) -> None:
    first = db.row("select * from graphile_worker.add_job('t', queue_name => 'q')")
    second = db.row("select * from graphile_worker.add_job('t', queue_name => 'q')")

    assert (first["task_id"], first["job_queue_id"]) == (second["task_id"], second["job_queue_id"])
    assert db.rows("select identifier from graphile_worker._private_tasks") == [{"identifier": "t"}]
    assert db.rows("select queue_name, locked_at from graphile_worker._private_job_queues") == [
        {"queue_name": "q", "locked_at": None}
    ]


def test_add_job__replace_updates_the_keyed_job(db: Db) -> None:
    old = db.row(
        "select * from graphile_worker.add_job('t1', '{\"a\": 1}', 'q1',"
        " now() + interval '1 hour', 3, 'k', 5, array['f'])"
    )
    db.conn.execute(
        "update graphile_worker._private_jobs set attempts = 2, last_error = 'x' where key = 'k'"
    )

    new = db.row("select * from graphile_worker.add_job('t2', '{\"b\": 2}', job_key => 'k')")

    now = db.now()
    assert new["id"] == old["id"]
    assert {**new, "task_id": db.task(new["task_id"])} == {
        **old,
        "task_id": "t2",
        "job_queue_id": None,
        "payload": {"b": 2},
        "priority": 0,
        "run_at": now,
        "attempts": 0,
        "max_attempts": 25,
        "last_error": None,
        "updated_at": now,
        "revision": 1,
        "flags": None,
    }


def test_add_job__null_mode_replaces(db: Db) -> None:
    db.row("select * from graphile_worker.add_job('t', job_key => 'k', priority => 4)")
    job = db.row(
        "select * from graphile_worker.add_job('t', '{\"x\": 1}', job_key => 'k',"
        " job_key_mode => null)"
    )
    assert pick(job, "payload", "priority", "revision") == {
        "payload": {"x": 1},
        "priority": 0,
        "revision": 1,
    }


def test_add_job__preserve_run_at_keeps_run_at(db: Db) -> None:
    db.row("select * from graphile_worker.add_job('t', job_key => 'k', priority => 1)")
    first_run_at = db.now()

    job = db.row(
        "select * from graphile_worker.add_job('t', '{\"v\": 2}', 'q', now() + interval '1 day',"
        " 7, 'k', 9, array['x'], 'preserve_run_at')"
    )

    assert {
        **pick(job, "payload", "run_at", "max_attempts", "priority", "flags", "revision"),
        "queue": db.queue(job["job_queue_id"]),
    } == {
        "payload": {"v": 2},
        "run_at": first_run_at,
        "max_attempts": 7,
        "priority": 9,
        "flags": {"x": True},
        "revision": 1,
        "queue": "q",
    }


@pytest.mark.parametrize(("attempts", "kept"), [(0, True), (1, False), (24, False)])
def test_add_job__preserve_run_at_only_while_the_job_has_not_failed(
    db: Db, attempts: int, kept: bool
) -> None:
    """A keyed job that failed once waits for its retry; re-adding it with preserve_run_at
    takes the new run_at (issue 12, item 2), as npm 0.18.0 does."""
    db.row(
        "select * from graphile_worker.add_job('t', job_key => 'k',"
        " run_at => now() + interval '1 hour')"
    )
    db.conn.execute(
        "update graphile_worker._private_jobs set attempts = %s, last_error = 'boom'", [attempts]
    )

    job = db.row(
        "select * from graphile_worker.add_job('t', job_key => 'k',"
        " run_at => now() + interval '1 day', job_key_mode => 'preserve_run_at')"
    )

    expected = db.now() + (timedelta(hours=1) if kept else timedelta(days=1))
    assert pick(job, "run_at", "attempts", "last_error") == {
        "run_at": expected,
        "attempts": 0,
        "last_error": None,
    }


def test_add_job__unsafe_dedupe_only_bumps_revision(db: Db) -> None:
    old = db.row("select * from graphile_worker.add_job('t', '{\"a\": 1}', job_key => 'k')")

    new = db.row(
        "select * from graphile_worker.add_job('other', '{\"b\": 2}', 'q',"
        " now() + interval '1 day', 3, 'k', 9, array['f'], 'unsafe_dedupe')"
    )

    assert new == {**old, "revision": 1, "updated_at": db.now()}


def test_add_job__unsafe_dedupe_returns_a_running_job(db: Db) -> None:
    old = db.row("select * from graphile_worker.add_job('t', job_key => 'k')")
    db.lock(old["id"], "worker-1", "5 hours")
    locked = db.job(old["id"])

    new = db.row(
        "select * from graphile_worker.add_job('t', job_key => 'k',"
        " job_key_mode => 'unsafe_dedupe')"
    )

    assert new == {**locked, "revision": 1, "updated_at": db.now()}
    assert len(db.jobs()) == 1


def test_add_job__unsafe_dedupe_inserts_a_new_key(db: Db) -> None:
    job = db.row(
        "select * from graphile_worker.add_job('t', job_key => 'k',"
        " job_key_mode => 'unsafe_dedupe')"
    )
    assert pick(job, "key", "revision") == {"key": "k", "revision": 0}


def test_add_job__unknown_mode_raises_gwbkm(db: Db) -> None:
    db.row("select * from graphile_worker.add_job('t', job_key => 'k')")
    with pytest.raises(psycopg.Error) as raised:
        db.row(
            "select * from graphile_worker.add_job('t', job_key => 'k', job_key_mode => 'bogus')"
        )
    assert raised.value.sqlstate == "GWBKM"


def test_add_job__unknown_mode_without_key_is_ignored(db: Db) -> None:
    job = db.row("select * from graphile_worker.add_job('t', job_key_mode => 'bogus')")
    assert job["key"] is None


@pytest.mark.parametrize("age", ["1 hour", "5 hours"])
def test_add_job__locked_keyed_job_loses_key(db: Db, age: str) -> None:
    old = db.row("select * from graphile_worker.add_job('t', '[1]', job_key => 'k')")
    db.lock(old["id"], "worker-1", age)

    new = db.row("select * from graphile_worker.add_job('t', '[2]', job_key => 'k')")

    assert new["id"] != old["id"]
    assert pick(new, "payload", *STATE) == {
        "payload": [2],
        "key": "k",
        "attempts": 0,
        "max_attempts": 25,
        "last_error": None,
        "locked_by": None,
        "revision": 0,
    }
    assert pick(db.job(old["id"]), "payload", "updated_at", *STATE) == {
        "payload": [1],
        "updated_at": db.now(),
        "key": None,
        "attempts": 25,
        "max_attempts": 25,
        "last_error": None,
        "locked_by": "worker-1",
        "revision": 0,
    }


def test_add_job__failed_keyed_job_loses_key(db: Db) -> None:
    old = db.row("select * from graphile_worker.add_job('t', job_key => 'k', max_attempts => 5)")
    db.conn.execute(
        "update graphile_worker._private_jobs set attempts = 9, last_error = 'boom' where id = %s",
        [old["id"]],
    )

    new = db.row("select * from graphile_worker.add_job('t', job_key => 'k')")

    assert new["id"] != old["id"]
    assert pick(db.job(old["id"]), *STATE) == {
        "key": None,
        "attempts": 5,
        "max_attempts": 5,
        "last_error": "boom",
        "locked_by": None,
        "revision": 0,
    }


def test_add_job__array_payloads_concatenate(db: Db) -> None:
    payloads = [
        db.row(
            "select payload from graphile_worker.add_job('t', %s::json, job_key => 'k',"
            " job_key_mode => %s)",
            [payload, mode],
        )["payload"]
        for payload, mode in [
            ("[1, 2]", "replace"),
            ("[3]", "replace"),
            ("[4]", "preserve_run_at"),
            ("[5]", "unsafe_dedupe"),
            ('{"o": 1}', "replace"),
            ("[6]", "replace"),
        ]
    ]
    assert payloads == [[1, 2], [1, 2, 3], [1, 2, 3, 4], [1, 2, 3, 4], {"o": 1}, [6]]


def test_add_job__notifies_jobs_insert(
    db: Db, listener: Callable[[], list[dict[str, Any]]]
) -> None:
    db.row("select * from graphile_worker.add_job('t')")
    db.row("select * from graphile_worker.add_job('t', job_key => 'k')")
    db.conn.commit()
    db.row("select * from graphile_worker.add_job('t', job_key => 'k')")
    db.conn.commit()
    db.row(
        "select * from graphile_worker.add_job('t', job_key => 'k',"
        " job_key_mode => 'unsafe_dedupe')"
    )
    db.conn.commit()

    assert counts(listener()) == [1, 1, 1]


def test_add_jobs__batch_inserts_in_order(
    db: Db, listener: Callable[[], list[dict[str, Any]]]
) -> None:
    jobs = db.rows(
        "select * from graphile_worker.add_jobs(array["
        "  row('a', '{\"n\": 1}', null, null, null, null, null, null),"
        "  row('b', null, 'q', now() + interval '1 hour', 3, 'k', 4, array['f'])"
        "]::graphile_worker.job_spec[])"
    )
    db.conn.commit()

    assert [
        {
            **pick(job, "payload", "run_at", "max_attempts", "key", "priority", "flags"),
            "task": db.task(job["task_id"]),
            "queue": db.queue(job["job_queue_id"]),
        }
        for job in jobs
    ] == [
        {
            "task": "a",
            "queue": None,
            "payload": {"n": 1},
            "run_at": jobs[0]["created_at"],
            "max_attempts": 25,
            "key": None,
            "priority": 0,
            "flags": None,
        },
        {
            "task": "b",
            "queue": "q",
            "payload": {},
            "run_at": jobs[0]["created_at"] + timedelta(hours=1),
            "max_attempts": 3,
            "key": "k",
            "priority": 4,
            "flags": {"f": True},
        },
    ]
    assert jobs[0]["id"] < jobs[1]["id"]
    assert counts(listener()) == [2]


def test_add_jobs__rejects_unsafe_dedupe(db: Db) -> None:
    """A batch has no job_key_mode at all: unsafe_dedupe cannot even be asked for."""
    with pytest.raises(errors.UndefinedFunction):
        db.rows(
            "select * from graphile_worker.add_jobs("
            "array[row('a', null, null, null, null, 'k', null, null)]::graphile_worker.job_spec[],"
            " job_key_mode => 'unsafe_dedupe')"
        )


def test_add_jobs__keyed_batch_replaces_and_concatenates(db: Db) -> None:
    old = db.row("select * from graphile_worker.add_job('t', '[1]', job_key => 'k', priority => 3)")

    new = db.row(
        "select * from graphile_worker.add_jobs(array["
        "  row('t', '[2]', null, null, null, 'k', null, null)]::graphile_worker.job_spec[])"
    )

    assert new["id"] == old["id"]
    assert pick(new, "payload", "priority", "revision", "updated_at") == {
        "payload": [1, 2],
        "priority": 0,
        "revision": 1,
        "updated_at": db.now(),
    }


@pytest.mark.parametrize("preserve", [True, False])
def test_add_jobs__preserve_run_at_applies_to_the_whole_batch(db: Db, preserve: bool) -> None:
    db.rows(
        "select * from graphile_worker.add_jobs(array["
        "  row('t', null, null, now() + interval '1 hour', null, 'k1', null, null),"
        "  row('t', null, null, now() + interval '2 hours', null, 'k2', null, null)"
        "]::graphile_worker.job_spec[])"
    )

    jobs = db.rows(
        "select key, run_at, revision from graphile_worker.add_jobs(array["
        "  row('t', null, null, now() + interval '1 day', null, 'k1', null, null),"
        "  row('t', null, null, now() + interval '1 day', null, 'k2', null, null)"
        "]::graphile_worker.job_spec[], %s)",
        [preserve],
    )

    now = db.now()
    kept = [now + timedelta(hours=1), now + timedelta(hours=2)]
    expected = kept if preserve else [now + timedelta(days=1)] * 2
    assert jobs == [
        {"key": "k1", "run_at": expected[0], "revision": 1},
        {"key": "k2", "run_at": expected[1], "revision": 1},
    ]


def test_add_jobs__preserve_run_at_only_for_jobs_that_have_not_failed(db: Db) -> None:
    db.rows(
        "select * from graphile_worker.add_jobs(array["
        "  row('t', null, null, now() + interval '1 hour', null, 'fresh', null, null),"
        "  row('t', null, null, now() + interval '1 hour', null, 'failed', null, null)"
        "]::graphile_worker.job_spec[])"
    )
    db.conn.execute("update graphile_worker._private_jobs set attempts = 1 where key = 'failed'")

    jobs = db.rows(
        "select key, run_at, attempts from graphile_worker.add_jobs(array["
        "  row('t', null, null, now() + interval '1 day', null, 'fresh', null, null),"
        "  row('t', null, null, now() + interval '1 day', null, 'failed', null, null)"
        "]::graphile_worker.job_spec[], true) order by key"
    )

    now = db.now()
    assert jobs == [
        {"key": "failed", "run_at": now + timedelta(days=1), "attempts": 0},
        {"key": "fresh", "run_at": now + timedelta(hours=1), "attempts": 0},
    ]


def test_add_jobs__locked_keyed_job_loses_key(db: Db) -> None:
    old = db.row("select * from graphile_worker.add_job('t', job_key => 'k')")
    db.lock(old["id"], "worker-1", "1 minute")

    new = db.row(
        "select * from graphile_worker.add_jobs(array["
        "  row('t', null, null, null, null, 'k', null, null)]::graphile_worker.job_spec[])"
    )

    assert new["id"] != old["id"]
    assert pick(db.job(old["id"]), "key", "attempts", "locked_by") == {
        "key": None,
        "attempts": 25,
        "locked_by": "worker-1",
    }


def test_add_jobs__duplicate_key_in_one_batch_fails(db: Db) -> None:
    with pytest.raises(errors.CardinalityViolation):
        db.rows(
            "select * from graphile_worker.add_jobs(array["
            "  row('t', null, null, null, null, 'k', null, null),"
            "  row('t', null, null, null, null, 'k', null, null)]::graphile_worker.job_spec[])"
        )


def _seed_jobs_for_the_four_hour_rule(db: Db) -> dict[str, int]:
    """Three jobs: free, locked an hour ago (a live worker), locked five hours ago (abandoned)."""
    ids = {
        name: db.row(
            "select id from graphile_worker.add_job('t', job_key => %s, max_attempts => 3)",
            [name],
        )["id"]
        for name in ("free", "recent", "stale")
    }
    db.lock(ids["recent"], "worker-1", "1 hour")
    db.lock(ids["stale"], "worker-2", "5 hours")
    return ids


def test_complete_jobs__four_hour_rule(db: Db) -> None:
    ids = _seed_jobs_for_the_four_hour_rule(db)

    done = db.rows(
        "select * from graphile_worker.complete_jobs(%s::bigint[])",
        [[*ids.values(), 999_999]],
    )

    assert sorted(job["key"] for job in done) == ["free", "stale"]
    assert [job["key"] for job in db.jobs()] == ["recent"]


def test_permanently_fail_jobs__default_message_and_four_hour_rule(db: Db) -> None:
    ids = _seed_jobs_for_the_four_hour_rule(db)

    failed = db.rows(
        "select * from graphile_worker.permanently_fail_jobs(%s::bigint[]) order by id",
        [list(ids.values())],
    )

    now = db.now()
    assert [
        pick(job, "key", "attempts", "last_error", "locked_by", "updated_at") for job in failed
    ] == [
        {
            "key": "free",
            "attempts": 3,
            "last_error": "Manually marked as failed",
            "locked_by": None,
            "updated_at": now,
        },
        {
            "key": "stale",
            "attempts": 3,
            "last_error": "Manually marked as failed",
            "locked_by": "worker-2",  # the abandoned lock itself is left in place
            "updated_at": now,
        },
    ]
    assert pick(db.job(ids["recent"]), "attempts", "last_error") == {
        "attempts": 0,
        "last_error": None,
    }


def test_permanently_fail_jobs__custom_message(db: Db) -> None:
    job = db.row("select * from graphile_worker.add_job('t')")
    failed = db.row(
        "select * from graphile_worker.permanently_fail_jobs(%s::bigint[], 'bad payload')",
        [[job["id"]]],
    )
    assert pick(failed, "attempts", "last_error", "is_available") == {
        "attempts": 25,
        "last_error": "bad payload",
        "is_available": False,
    }


def test_reschedule_jobs__replaces_given_values(db: Db) -> None:
    job = db.row("select * from graphile_worker.add_job('t')")
    db.conn.execute(
        "update graphile_worker._private_jobs set attempts = 2, last_error = 'x' where id = %s",
        [job["id"]],
    )

    new = db.row(
        "select * from graphile_worker.reschedule_jobs(%s::bigint[],"
        " now() + interval '1 day', 7, 1, 9)",
        [[job["id"]]],
    )

    now = db.now()
    assert new == {
        **job,
        "run_at": now + timedelta(days=1),
        "priority": 7,
        "attempts": 1,
        "max_attempts": 9,
        "last_error": "x",
        "updated_at": now,
    }


def test_reschedule_jobs__null_keeps_current_values(db: Db) -> None:
    job = db.row(
        "select * from graphile_worker.add_job('t', run_at => now() + interval '1 hour',"
        " priority => 3, max_attempts => 4)"
    )

    new = db.row("select * from graphile_worker.reschedule_jobs(%s::bigint[])", [[job["id"]]])

    assert new == {**job, "updated_at": db.now()}


def test_reschedule_jobs__attempts_zero_revives_a_failed_job(db: Db) -> None:
    job = db.row("select * from graphile_worker.add_job('t', max_attempts => 2)")
    db.rows("select * from graphile_worker.permanently_fail_jobs(%s::bigint[])", [[job["id"]]])

    new = db.row(
        "select * from graphile_worker.reschedule_jobs(%s::bigint[], attempts => 0)",
        [[job["id"]]],
    )

    assert pick(new, "attempts", "max_attempts", "is_available") == {
        "attempts": 0,
        "max_attempts": 2,
        "is_available": True,
    }


def test_reschedule_jobs__four_hour_rule(db: Db) -> None:
    ids = _seed_jobs_for_the_four_hour_rule(db)

    moved = db.rows(
        "select * from graphile_worker.reschedule_jobs(%s::bigint[], priority => 8) order by id",
        [list(ids.values())],
    )

    assert [pick(job, "key", "priority", "locked_by") for job in moved] == [
        {"key": "free", "priority": 8, "locked_by": None},
        {"key": "stale", "priority": 8, "locked_by": "worker-2"},
    ]
    assert db.job(ids["recent"])["priority"] == 0


def test_remove_job__deletes_unlocked_job_and_notifies(
    db: Db, listener: Callable[[], list[dict[str, Any]]]
) -> None:
    job = db.row("select * from graphile_worker.add_job('t', job_key => 'k')")
    db.conn.commit()
    listener()

    removed = db.row("select * from graphile_worker.remove_job('k')")
    db.conn.commit()

    assert removed == job
    assert db.jobs() == []
    assert counts(listener()) == [-1]


def test_remove_job__locked_job_loses_key(
    db: Db, listener: Callable[[], list[dict[str, Any]]]
) -> None:
    job = db.row("select * from graphile_worker.add_job('t', job_key => 'k')")
    db.lock(job["id"], "worker-1", "1 hour")
    db.conn.commit()
    listener()

    removed = db.row("select * from graphile_worker.remove_job('k')")
    now = db.now()
    db.conn.commit()

    assert pick(removed, "id", "updated_at", *STATE) == {
        "id": job["id"],
        "updated_at": now,
        "key": None,
        "attempts": 25,
        "max_attempts": 25,
        "last_error": None,
        "locked_by": "worker-1",
        "revision": 0,
    }
    assert db.job(job["id"]) == removed
    assert listener() == []


def test_remove_job__abandoned_lock_is_deleted(db: Db) -> None:
    job = db.row("select * from graphile_worker.add_job('t', job_key => 'k')")
    db.lock(job["id"], "worker-1", "5 hours")

    removed = db.row("select * from graphile_worker.remove_job('k')")

    assert pick(removed, "id", "key", "locked_by") == {
        "id": job["id"],
        "key": "k",
        "locked_by": "worker-1",
    }
    assert db.jobs() == []


@pytest.mark.parametrize("key", ["no-such-key", None])
def test_remove_job__unknown_or_null_key_returns_a_null_row(db: Db, key: str | None) -> None:
    db.row("select * from graphile_worker.add_job('t', job_key => 'k')")

    removed = db.row("select * from graphile_worker.remove_job(%s)", [key])

    assert set(removed.values()) == {None}
    assert len(db.jobs()) == 1


def test_force_unlock_workers__clears_jobs_and_queues(db: Db) -> None:
    mine = db.row("select * from graphile_worker.add_job('t', queue_name => 'q1')")
    theirs = db.row("select * from graphile_worker.add_job('t', queue_name => 'q2')")
    db.conn.execute(
        "update graphile_worker._private_jobs set attempts = 1, last_error = 'e',"
        " locked_at = now() - interval '1 minute',"
        " locked_by = case when id = %s then 'w1' else 'w2' end",
        [mine["id"]],
    )
    db.conn.execute(
        "update graphile_worker._private_job_queues set locked_at = now(),"
        " locked_by = case when queue_name = 'q1' then 'w1' else 'w2' end"
    )
    before = db.job(mine["id"])

    db.rows("select * from graphile_worker.force_unlock_workers(array['w1', 'w9'])")

    assert db.job(mine["id"]) == {
        **before,
        "locked_at": None,
        "locked_by": None,
        "is_available": True,
    }
    assert db.job(theirs["id"])["locked_by"] == "w2"
    assert db.rows(
        "select queue_name, locked_by from graphile_worker._private_job_queues order by 1"
    ) == [{"queue_name": "q1", "locked_by": None}, {"queue_name": "q2", "locked_by": "w2"}]


def test_jobs_view__names_instead_of_ids_without_payload(db: Db) -> None:
    job = db.row(
        "select * from graphile_worker.add_job('t', '{\"secret\": 1}', 'q', job_key => 'k')"
    )

    row = db.row("select * from graphile_worker.jobs")

    assert list(row) == [
        "id", "queue_name", "task_identifier", "priority", "run_at", "attempts",
        "max_attempts", "last_error", "created_at", "updated_at", "key", "locked_at",
        "locked_by", "revision", "flags",
    ]  # fmt: skip
    assert row == {
        **{name: job[name] for name in row if name in job},
        "queue_name": "q",
        "task_identifier": "t",
    }


# --- the recovery extension ------------------------------------------------------------------


def _workers(db: Db) -> list[dict[str, Any]]:
    return db.rows("select * from graphile_worker._private_workers order by id")


def test_worker_heartbeat__registers_and_keeps_metadata(db: Db) -> None:
    db.rows("select graphile_worker.worker_heartbeat('w1', '{\"pid\": 42}')")
    db.conn.execute(
        "update graphile_worker._private_workers"
        " set started_at = now() - interval '1 hour',"
        " last_heartbeat_at = now() - interval '1 minute'"
    )
    db.rows("select graphile_worker.worker_heartbeat('w1')")
    now = db.now()
    assert _workers(db) == [
        {
            "id": "w1",
            "last_heartbeat_at": now,
            "started_at": now - timedelta(hours=1),
            "metadata": {"pid": 42},
        }
    ]

    db.rows("select graphile_worker.worker_heartbeat('w1', '{\"pid\": 43}')")
    assert [w["metadata"] for w in _workers(db)] == [{"pid": 43}]


def test_worker_deregister__removes_the_worker(db: Db) -> None:
    db.rows("select graphile_worker.worker_heartbeat('w1')")
    db.rows("select graphile_worker.worker_heartbeat('w2')")

    db.rows("select graphile_worker.worker_deregister('w1')")

    assert [w["id"] for w in _workers(db)] == ["w2"]


def _seed_heartbeats(db: Db, **ages: str) -> None:
    for worker, age in ages.items():
        db.conn.execute(
            "insert into graphile_worker._private_workers (id, last_heartbeat_at)"
            " values (%s, now() - %s::interval)",
            [worker, age],
        )


def test_list_stale_workers__by_threshold(db: Db) -> None:
    _seed_heartbeats(db, fresh="30 seconds", old="6 minutes", ancient="2 days")

    stale = db.rows(
        "select * from graphile_worker.list_stale_workers(interval '5 minutes') order by 1"
    )

    assert stale == [{"worker_id": "ancient"}, {"worker_id": "old"}]


def test_list_orphan_locked_workers__unregistered_old_lock_holders(db: Db) -> None:
    _seed_heartbeats(db, registered="10 minutes")
    for worker, age in [
        ("registered", "1 hour"),
        ("orphan", "1 hour"),
        ("orphan", "2 hours"),
        ("young", "1 minute"),
    ]:
        job = db.row("select * from graphile_worker.add_job('t')")
        db.lock(job["id"], worker, age)
    db.row("select * from graphile_worker.add_job('t', queue_name => 'q')")
    db.conn.execute(
        "update graphile_worker._private_job_queues"
        " set locked_at = now() - interval '1 hour', locked_by = 'queue-only'"
    )

    orphans = db.rows(
        "select * from graphile_worker.list_orphan_locked_workers(interval '5 minutes') order by 1"
    )

    assert orphans == [{"worker_id": "orphan"}, {"worker_id": "queue-only"}]


def test_recover_dead_worker_jobs__unlocks_and_counts(db: Db) -> None:
    seeds = [
        ("q1", "-1 day", 3, "dead"),
        ("q2", "10 days", 0, "dead"),
        ("q3", "-1 day", 3, "alive"),
    ]
    ids = []
    for queue, run_in, attempts, worker in seeds:
        job = db.row(
            "select * from graphile_worker.add_job('t', queue_name => %s,"
            " run_at => now() + %s::interval)",
            [queue, run_in],
        )
        db.conn.execute(
            "update graphile_worker._private_jobs set attempts = %s where id = %s",
            [attempts, job["id"]],
        )
        db.lock(job["id"], worker, "1 hour")
        ids.append(job["id"])
    db.conn.execute(
        "update graphile_worker._private_job_queues set locked_at = now(),"
        " locked_by = case when queue_name = 'q3' then 'alive' else 'dead' end"
    )

    recovered = db.value(
        "select graphile_worker.recover_dead_worker_jobs(array['dead', 'gone'],"
        " interval '30 seconds')"
    )

    now = db.now()
    recovered_fields = {
        "last_error": "Job recovered after worker interruption",
        "locked_at": None,
        "locked_by": None,
        "updated_at": now,
    }
    assert recovered == 2
    assert [
        pick(job, "attempts", "run_at", "last_error", "locked_at", "locked_by", "updated_at")
        for job in db.jobs()
    ] == [
        {"attempts": 2, "run_at": now + timedelta(seconds=30), **recovered_fields},
        # never below zero; a run_at later than the delay is kept
        {"attempts": 0, "run_at": now + timedelta(days=10), **recovered_fields},
        {
            "attempts": 3,
            "run_at": now - timedelta(days=1),
            "last_error": None,
            "locked_at": now - timedelta(hours=1),
            "locked_by": "alive",
            "updated_at": now,
        },
    ]
    assert db.rows(
        "select queue_name, locked_by from graphile_worker._private_job_queues order by 1"
    ) == [
        {"queue_name": "q1", "locked_by": None},
        {"queue_name": "q2", "locked_by": None},
        {"queue_name": "q3", "locked_by": "alive"},
    ]


def test_recover_dead_worker_jobs__default_delay_is_zero(db: Db) -> None:
    job = db.row("select * from graphile_worker.add_job('t', run_at => now() - interval '1 day')")
    db.lock(job["id"], "dead", "1 hour")

    assert db.value("select graphile_worker.recover_dead_worker_jobs(array['dead'])") == 1
    assert db.value("select graphile_worker.recover_dead_worker_jobs(array['dead'])") == 0
    assert db.job(job["id"])["run_at"] == db.now()


def test_delete_stale_workers__removes_the_given_workers(db: Db) -> None:
    _seed_heartbeats(db, a="1 hour", b="1 hour", c="1 second")

    db.rows("select graphile_worker.delete_stale_workers(array['a', 'c', 'zzz'])")

    assert [w["id"] for w in _workers(db)] == ["b"]
