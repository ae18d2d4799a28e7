"""The capabilities cache is shared truth across processes: a change to the schema made
elsewhere (another console process, npm's installer, a Rust worker, psql) is seen within
PROBE_SECONDS, and an unchanged catalog costs one small query instead of the whole detection."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from tests.dbconn import server_conninfo
from worker_admin import schema as schema_module
from worker_admin.installer import quote_schema
from worker_admin.utils import WorkerUtils

SCHEMA = "gw_caps_probe"


@pytest.fixture
def probe_schema(transactional_db, settings):
    WorkerUtils(schema=SCHEMA).migrate(recovery=False)
    settings.GRAPHILE_WORKER_SCHEMA = SCHEMA
    yield SCHEMA
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {quote_schema(SCHEMA)} CASCADE")


def _elsewhere(statement: str) -> None:
    """A statement from another session, as another process would run it."""
    with psycopg.connect(server_conninfo(), autocommit=True) as other:
        other.execute(statement)


def test_recovery_added_by_another_process_is_seen_after_the_probe_interval(
    probe_schema, monkeypatch
):
    monkeypatch.setattr(schema_module, "PROBE_SECONDS", 0.0)
    assert not schema_module.capabilities().has_recovery

    # Another session adds the recovery objects (npm's or Rust's installer, another console
    # process); this process never clears its cache.
    cached = dict(schema_module._cache)
    WorkerUtils(schema=SCHEMA).migrate(recovery=True)
    schema_module._cache.clear()
    schema_module._cache.update(cached)  # as if the change had happened in another process
    assert schema_module.capabilities().has_recovery


def test_a_revoked_privilege_elsewhere_is_seen(probe_schema, monkeypatch):
    monkeypatch.setattr(schema_module, "PROBE_SECONDS", 0.0)
    assert schema_module.capabilities().can_read_jobs
    jobs = f"{quote_schema(SCHEMA)}._private_jobs"
    _elsewhere(f"ALTER TABLE {jobs} ENABLE ROW LEVEL SECURITY")
    _elsewhere(f"ALTER TABLE {jobs} FORCE ROW LEVEL SECURITY")
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = cursor.fetchone()[0]
    if superuser:  # superusers bypass RLS: the flag that changes is still in the fingerprint
        before = schema_module.catalog_fingerprint("default", SCHEMA)
        _elsewhere(f"CREATE POLICY p_none ON {jobs} USING (false)")
        assert schema_module.catalog_fingerprint("default", SCHEMA) != before
    else:
        assert schema_module.capabilities().rls_blocks_reads


def test_an_unchanged_catalog_reuses_the_detection(probe_schema, monkeypatch):
    monkeypatch.setattr(schema_module, "PROBE_SECONDS", 0.0)
    runs = []
    real_detect = schema_module.detect
    monkeypatch.setattr(schema_module, "detect", lambda *a: runs.append(a) or real_detect(*a))
    for _ in range(5):
        schema_module.capabilities()
    assert len(runs) == 1  # probed five times, detected once


def test_the_fingerprint_of_a_missing_schema_is_stable_and_differs_once_created(transactional_db):
    name = "gw_caps_absent"
    first = schema_module.catalog_fingerprint("default", name)
    assert first == schema_module.catalog_fingerprint("default", name)
    _elsewhere(f"CREATE SCHEMA {name}")
    try:
        assert schema_module.catalog_fingerprint("default", name) != first
    finally:
        _elsewhere(f"DROP SCHEMA {name}")
