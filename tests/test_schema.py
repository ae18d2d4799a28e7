"""Capability detection: flavours, the recovery extension, and row-level security."""

import pytest
from django.db import connection

from worker_admin.installer import Flavour
from worker_admin.schema import detect
from worker_admin.utils import WorkerUtils


def test_detect__our_install_is_rust_recovery(db, worker_schema):
    caps = detect("default", worker_schema)
    assert caps.flavour is Flavour.RUST_RECOVERY
    assert caps.has_recovery and caps.has_force_unlock and caps.can_read_jobs
    assert not caps.rls_blocks_reads
    assert caps.latest_migration == 20
    assert caps.problem is None


def test_detect__node_schema_has_no_recovery(db):
    WorkerUtils(schema="gw_node_only").migrate(recovery=False)
    caps = detect("default", "gw_node_only")
    assert caps.flavour is Flavour.NODE
    assert not caps.has_recovery and not caps.has_workers_table and caps.has_force_unlock
    assert caps.problem is None


def test_detect__absent_schema_says_how_to_install(db):
    caps = detect("default", "no_such_schema")
    assert caps.flavour is Flavour.ABSENT
    assert "graphile_worker migrate" in caps.problem


def test_detect__legacy_schema_is_refused_in_one_sentence(db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA gw_legacy; CREATE TABLE gw_legacy.jobs (id bigint)")
    caps = detect("default", "gw_legacy")
    assert caps.flavour is Flavour.LEGACY
    assert caps.problem.startswith("Unsupported schema version")


@pytest.fixture
def rls_role(db, worker_schema):
    """A role that may SELECT but is neither owner nor BYPASSRLS, active for this transaction."""
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS gw_console_reader")
        cursor.execute("CREATE ROLE gw_console_reader NOLOGIN NOBYPASSRLS")
        cursor.execute(f"GRANT USAGE ON SCHEMA {worker_schema} TO gw_console_reader")
        cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {worker_schema} TO gw_console_reader")
        cursor.execute("SET LOCAL ROLE gw_console_reader")
    yield "gw_console_reader"
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def test_detect__row_level_security_hides_jobs(jobs, rls_role, worker_schema):
    caps = detect("default", worker_schema)
    assert caps.connected_role == rls_role
    assert caps.rls_blocks_reads
    assert caps.problem.startswith(f'Connected role "{rls_role}" cannot read')
    assert "row-level security" in caps.problem


def test_detect__no_select_privilege_is_named(db, worker_schema):
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS gw_console_nobody")
        cursor.execute("CREATE ROLE gw_console_nobody NOLOGIN")
        cursor.execute(f"GRANT USAGE ON SCHEMA {worker_schema} TO gw_console_nobody")
        cursor.execute("SET LOCAL ROLE gw_console_nobody")
    caps = detect("default", worker_schema)
    assert not caps.can_read_jobs
    assert "no SELECT privilege" in caps.problem
