"""Install, detect and describe the Graphile Worker schema.

The console can set up a worker schema itself (for a fresh database, for tests, for the Rust
recovery extension that databases migrated by graphile-worker 0.18 never receive), so it must
produce exactly what the real packages produce: `sql/core.sql` is the graphile-worker 0.18.0 shape
and `sql/recovery.sql` the Rust worker-recovery extension. `catalog_snapshot`
(worker_admin/catalog_snapshot.py) describes a schema in a normalised form so that the test suite
can prove the installer's catalog against the real npm package; tests/test_differential.py
proves the functions' behaviour.

Plain Python and psycopg-compatible DB-API only (no Django imports): the functions take any cursor
whose `execute` accepts a plain SQL string plus optional `%s` parameters, which covers a raw
psycopg 3 cursor and a Django cursor wrapper alike.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from pathlib import Path

from worker_admin.catalog_cursor import Cursor
from worker_admin.catalog_cursor import scalar as _scalar
from worker_admin.catalog_cursor import values as _values

SQL_DIR = Path(__file__).resolve().parent / "sql"

# The placeholder the SQL files use for the schema; replaced by a double-quoted identifier.
SCHEMA_PLACEHOLDER = "{{schema}}"
# The dollar-quote tag the SQL files use for function bodies (see _render_sql).
BODY_TAG = "$body$"

# pg_advisory_xact_lock key pair that serialises migrate()/add_recovery() across sessions: the
# ASCII codes of "GWCN" (Graphile Worker CoNsole) and "MIGR". It is held until the caller's
# transaction ends, so a second migrate waits and then sees the first one's committed objects.
# It is distinct from the Rust sweeper's (1196905043, 1398228304). Node's own migrate does not
# take it, so it does not serialise against a Node worker installing the schema at the same time.
MIGRATE_LOCK_KEYS = (0x4757434E, 0x4D494752)

# The six functions of the Rust worker-recovery extension (GRAPHILE_WORKER.md section 5).
RECOVERY_FUNCTIONS = (
    "worker_heartbeat",
    "worker_deregister",
    "list_stale_workers",
    "list_orphan_locked_workers",
    "recover_dead_worker_jobs",
    "delete_stale_workers",
)

# Everything core.sql creates by name; an ABSENT schema must hold none of them.
CORE_RELATIONS = (
    "_private_jobs",
    "_private_job_queues",
    "_private_tasks",
    "_private_known_crontabs",
    "migrations",
    "jobs",
    "job_spec",
    "jobs_id_seq1",
    "job_queues_id_seq",
    "tasks_id_seq",
    "jobs_pkey1",
    "jobs_key_key1",
    "jobs_main_index",
    "jobs_no_queue_index",
    "job_queues_pkey1",
    "job_queues_queue_name_key",
    "tasks_pkey",
    "tasks_identifier_key",
    "known_crontabs_pkey",
    "migrations_pkey",
)
CORE_FUNCTIONS = (
    "add_job",
    "add_jobs",
    "complete_jobs",
    "permanently_fail_jobs",
    "reschedule_jobs",
    "remove_job",
    "force_unlock_workers",
)

# The migrations core.sql records: graphile-worker 0.18.0's 1..20, with Node's breaking flags.
# A database whose migrations table holds a breaking migration above KNOWN_MIGRATIONS was made by
# a newer release; the Node and Rust runners refuse it, and so does migrate().
KNOWN_MIGRATIONS = 20
BREAKING_MIGRATIONS = (1, 3, 11, 13, 14, 16, 19)

MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1; PostgreSQL silently truncates longer names.


class Flavour(enum.Enum):
    """Which worker schema a database holds, judged by its objects (never by migration ids)."""

    ABSENT = "absent"  # no worker tables (the schema may be missing or empty)
    LEGACY = "legacy"  # graphile-worker <= 0.15: jobs is a table; unsupported
    NODE = "node"  # graphile-worker 0.16+ core schema without the recovery extension
    RUST_RECOVERY = "rust-recovery"  # the core schema plus the Rust worker-recovery extension


class InstallerError(Exception):
    """Base class for errors the installer raises on purpose, with a sentence for the user."""


class UnsupportedSchemaError(InstallerError):
    """The schema holds something the installer must not touch (a legacy or foreign layout)."""


class SchemaTooNewError(UnsupportedSchemaError):
    """The migrations table holds a breaking migration newer than this installer knows."""


class RecoveryUnsafeError(UnsupportedSchemaError):
    """Adding the recovery objects now would make the Rust runner fail on this database later."""


class TransactionRequiredError(InstallerError):
    """The cursor runs in autocommit mode, so the installation would not be atomic."""


@dataclass(frozen=True)
class MigrateResult:
    """What migrate() found and what it did, for the CLI and the audit log to report."""

    flavour_before: Flavour
    flavour_after: Flavour
    installed_core: bool
    added_recovery: bool


def quote_schema(name: str) -> str:
    """Return `name` as a double-quoted SQL identifier, refusing names PostgreSQL would alter.

    Always quoting keeps the name exactly as configured (case, spaces, punctuation); the length
    check matters because PostgreSQL would silently truncate a longer name and we would then look
    for objects under a name that does not exist.
    """
    if not isinstance(name, str):
        raise TypeError(f"schema name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("schema name must not be empty")
    if "\x00" in name:
        raise ValueError("schema name must not contain a NUL character")
    size = len(name.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"schema name is {size} bytes long; PostgreSQL identifiers are at most "
            f"{MAX_IDENTIFIER_BYTES} bytes"
        )
    return '"' + name.replace('"', '""') + '"'


def detect_flavour(cur: Cursor, schema: str) -> Flavour:
    """Tell which worker schema `schema` holds, from the catalog.

    Migration ids cannot be trusted for this (Node and Rust both number 19 and 20 with different
    contents), so look for the objects themselves. A partially installed recovery extension counts
    as NODE, so that add_recovery() completes it.
    """
    quote_schema(schema)
    recovery_names = ", ".join(f"'{name}'" for name in RECOVERY_FUNCTIONS)
    cur.execute(
        f"""
        select
          (select c.relkind::text
             from pg_catalog.pg_class as c
             where c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(%s) || '.jobs'))
            as jobs_kind,
          pg_catalog.to_regclass(pg_catalog.quote_ident(%s) || '._private_jobs') is not null
            as has_private_jobs,
          pg_catalog.to_regclass(pg_catalog.quote_ident(%s) || '._private_workers') is not null
            as has_workers,
          (select count(distinct p.proname)
             from pg_catalog.pg_proc as p
             join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
             where n.nspname = %s and p.proname in ({recovery_names}))
            as recovery_functions
        """,
        [schema, schema, schema, schema],
    )
    jobs_kind, has_private_jobs, has_workers, recovery_functions = _values(cur.fetchone())
    if has_private_jobs:
        if has_workers and recovery_functions == len(RECOVERY_FUNCTIONS):
            return Flavour.RUST_RECOVERY
        return Flavour.NODE
    if jobs_kind == "r":
        return Flavour.LEGACY
    return Flavour.ABSENT


def migrate(cur: Cursor, schema: str, *, recovery: bool = True) -> MigrateResult:
    """Bring `schema` to the 0.18 core shape, plus the recovery extension when `recovery` is set.

    The caller owns the transaction and must run this inside ONE transaction (psycopg: a
    non-autocommit connection or `conn.transaction()`; Django: `transaction.atomic()`), then
    commit: the core objects, the migrations rows and the recovery objects appear together or not
    at all, and the advisory lock (MIGRATE_LOCK_KEYS) that serialises concurrent migrates is held
    until that commit. An existing core schema is never altered: a NODE schema only gains the
    recovery objects (when asked), a RUST_RECOVERY schema is left alone.

    Raises UnsupportedSchemaError for a legacy (<= 0.15) schema or a schema that already holds
    objects with the names the installer would create; its subclasses SchemaTooNewError for a
    schema with a breaking migration above 20, and RecoveryUnsafeError when `recovery` is set on
    a 0.16/0.17 database (see add_recovery); TransactionRequiredError in autocommit mode.
    """
    quote_schema(schema)
    _require_transaction(cur)
    _take_migrate_lock(cur)
    before = detect_flavour(cur, schema)
    if before is Flavour.LEGACY:
        raise UnsupportedSchemaError(_legacy_message(schema))
    if before is not Flavour.ABSENT:
        _refuse_newer_schema(cur, schema)

    installed_core = False
    if before is Flavour.ABSENT:
        _refuse_name_clashes(cur, schema)
        _run_sql_file(cur, "core.sql", schema)
        installed_core = True

    added_recovery = False
    if recovery and before is not Flavour.RUST_RECOVERY:
        added_recovery = add_recovery(cur, schema)

    return MigrateResult(
        flavour_before=before,
        flavour_after=detect_flavour(cur, schema),
        installed_core=installed_core,
        added_recovery=added_recovery,
    )


def add_recovery(cur: Cursor, schema: str) -> bool:
    """Add the Rust worker-recovery extension to an installed core schema.

    This is the way to give a database that graphile-worker 0.18 migrated the recovery objects:
    the Rust runner never adds them there, because it only applies migration ids above the
    highest recorded one and Node's migration 20 is already recorded. Below that (0.16.x and
    0.17.x databases, highest id 18 or 19) the Rust runner does apply its own migration 20, which
    creates the recovery objects without IF NOT EXISTS, so adding them first would make it fail
    to start: refused with RecoveryUnsafeError (docs/schema.md has the whole matrix).

    Returns True when objects were added, False when they were already all present. Same
    transaction contract as migrate(). Raises UnsupportedSchemaError when there is no 0.16+ core
    schema to extend.
    """
    quote_schema(schema)
    _require_transaction(cur)
    _take_migrate_lock(cur)
    flavour = detect_flavour(cur, schema)
    if flavour is Flavour.ABSENT:
        raise UnsupportedSchemaError(
            f"cannot add the worker-recovery extension: schema {schema} has no Graphile Worker "
            f"tables; install the core schema first (migrate)"
        )
    if flavour is Flavour.LEGACY:
        raise UnsupportedSchemaError(_legacy_message(schema))
    _refuse_newer_schema(cur, schema)
    if flavour is Flavour.RUST_RECOVERY:
        return False
    _refuse_recovery_below_migration_20(cur, schema)
    _run_sql_file(cur, "recovery.sql", schema)
    return True


# --- migrate helpers -------------------------------------------------------------------------


def _legacy_message(schema: str) -> str:
    return (
        f"unsupported schema version: {schema}.jobs is a table (graphile-worker 0.15 or older); "
        f"upgrade it with graphile-worker 0.16+ first"
    )


def _refuse_newer_schema(cur: Cursor, schema: str) -> None:
    """Refuse a schema that a newer release migrated with a breaking change.

    The Node and Rust runners refuse to work on such a database, and our SQL files describe
    0.18.0's shape, so neither installing over it nor extending it can be right. A newer
    migration that is not breaking is accepted, as the runners accept it (with a warning).
    """
    if not _has_relation(cur, schema, "migrations"):
        return
    newest_breaking = _scalar(
        cur,
        f"select max(m.id) from {quote_schema(schema)}.migrations as m"
        " where m.breaking and m.id > %s",
        [KNOWN_MIGRATIONS],
    )
    if newest_breaking is not None:
        raise SchemaTooNewError(
            f"database is more up to date than this installer: {schema}.migrations holds "
            f"breaking migration {newest_breaking}, and this installer knows migrations up to "
            f"{KNOWN_MIGRATIONS} (graphile-worker 0.18.0); upgrade the console, or migrate with "
            f"the graphile-worker release that wrote migration {newest_breaking}"
        )


def _refuse_recovery_below_migration_20(cur: Cursor, schema: str) -> None:
    """Refuse to add recovery where the Rust runner would still run its own migration 20.

    A partly added extension (_private_workers exists) was added by us before, or by the Rust
    runner itself; completing it changes nothing about what the runner will do.
    """
    if _has_relation(cur, schema, "_private_workers"):
        return
    highest = 0
    if _has_relation(cur, schema, "migrations"):
        highest = _scalar(
            cur, f"select coalesce(max(m.id), 0) from {quote_schema(schema)}.migrations as m"
        )
    if highest < KNOWN_MIGRATIONS:
        raise RecoveryUnsafeError(
            f"cannot add the worker-recovery objects to {schema}: its highest migration is "
            f"{highest} (installed by graphile-worker 0.16 or 0.17), so the Rust runner would "
            f"still apply its own migration 20 there and fail on the objects already being "
            f"present; upgrade the schema with graphile-worker 0.18 first (graphile-worker "
            f"--schema-only) and add them then, or let the Rust runner migrate it, which adds "
            f"them itself"
        )


def _has_relation(cur: Cursor, schema: str, name: str) -> bool:
    return _scalar(
        cur,
        "select pg_catalog.to_regclass(pg_catalog.quote_ident(%s) || '.' || %s) is not null",
        [schema, name],
    )


def _require_transaction(cur: Cursor) -> None:
    """Refuse autocommit: a transaction-local setting must survive into the next statement.

    This works the same for every cursor type (psycopg, Django) and on read-only servers, unlike
    asking the driver or assigning a transaction id.
    """
    token = uuid.uuid4().hex
    cur.execute(
        "select pg_catalog.set_config('graphile_worker_console.transaction_check', %s, true)",
        [token],
    )
    cur.fetchone()
    seen = _scalar(
        cur, "select pg_catalog.current_setting('graphile_worker_console.transaction_check', true)"
    )
    if seen != token:
        raise TransactionRequiredError(
            "the worker schema installer must run inside one transaction (the cursor is in "
            "autocommit mode); wrap the call in a transaction and commit afterwards"
        )


def _take_migrate_lock(cur: Cursor) -> None:
    key1, key2 = MIGRATE_LOCK_KEYS
    cur.execute(f"select pg_catalog.pg_advisory_xact_lock({key1}, {key2})")
    cur.fetchone()


def _refuse_name_clashes(cur: Cursor, schema: str) -> None:
    """Stop before core.sql fails half-way on an object that is already there.

    An ABSENT schema may exist and hold unrelated objects; only the names the installer would
    create matter (for example the lone migrations table of an interrupted Node install).
    """
    names = ", ".join(f"'{name}'" for name in (*CORE_RELATIONS, *CORE_FUNCTIONS))
    cur.execute(
        f"""
        select c.relname::text as name
          from pg_catalog.pg_class as c
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          where n.nspname = %s and c.relname in ({names})
        union
        select p.proname::text as name
          from pg_catalog.pg_proc as p
          join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
          where n.nspname = %s and p.proname in ({names})
        order by 1
        """,
        [schema, schema],
    )
    clashes = [_values(row)[0] for row in cur.fetchall()]
    if clashes:
        raise UnsupportedSchemaError(
            f"schema {schema} has no Graphile Worker jobs table but already contains objects "
            f"the installer would create ({', '.join(clashes)}); refusing to install over them"
        )


def _run_sql_file(cur: Cursor, filename: str, schema: str) -> None:
    cur.execute(_render_sql((SQL_DIR / filename).read_text(encoding="utf-8"), schema))


def _render_sql(text: str, schema: str) -> str:
    """Substitute the schema into an SQL file.

    The quoted identifier may contain any character, including the text of the dollar-quote tag
    around function bodies; choose a tag it does not contain so the name cannot end a body early.
    """
    quoted = quote_schema(schema)
    tag, n = BODY_TAG, 0
    while tag in quoted:
        n += 1
        tag = f"$body{n}$"
    return text.replace(BODY_TAG, tag).replace(SCHEMA_PLACEHOLDER, quoted)
