"""`manage.py graphile_worker migrate` through call_command."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from worker_admin.installer import Flavour, detect_flavour


def _run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("graphile_worker", *args, stdout=out)
    return out.getvalue()


def test_migrate__up_to_date_changes_nothing(db):
    result = json.loads(_run("--json", "migrate"))
    assert result["flavour_before"] == result["flavour_after"] == "rust-recovery"
    assert not result["installed_core"] and not result["added_recovery"]


def test_migrate__fresh_schema_then_add_recovery(db):
    out = _run("--schema", "gw_cmd", "migrate", "--no-recovery")
    assert "Installed the Graphile Worker schema gw_cmd." in out
    with connection.cursor() as cursor:
        assert detect_flavour(cursor, "gw_cmd") is Flavour.NODE
    assert "Added the worker-recovery objects" in _run(
        "--schema", "gw_cmd", "migrate", "--add-recovery"
    )
    assert "already present" in _run("--schema", "gw_cmd", "migrate", "--add-recovery")
    with connection.cursor() as cursor:
        assert detect_flavour(cursor, "gw_cmd") is Flavour.RUST_RECOVERY


def test_migrate__legacy_refused(db):
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA gw_old; CREATE TABLE gw_old.jobs (id bigint)")
    with pytest.raises(CommandError, match="unsupported schema version"):
        _run("--schema", "gw_old", "migrate")
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('gw_old._private_jobs')")
        assert cursor.fetchone()[0] is None


def test_migrate__newer_breaking_migration_refused(db):
    _run("--schema", "gw_newer", "migrate", "--no-recovery")
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO gw_newer.migrations (id, breaking) VALUES (21, true)")
    for args in (["migrate"], ["migrate", "--add-recovery"]):
        with pytest.raises(CommandError, match=r"^database is more up to date than this installer"):
            _run("--schema", "gw_newer", *args)
    with connection.cursor() as cursor:
        assert detect_flavour(cursor, "gw_newer") is Flavour.NODE


def test_migrate__recovery_refused_below_node_migration_20(db):
    """A database that graphile-worker 0.17 left at migration 19 (simulated: ours without 20)."""
    _run("--schema", "gw_017", "migrate", "--no-recovery")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM gw_017.migrations WHERE id = 20")
    for args in (["migrate"], ["migrate", "--add-recovery"]):
        with pytest.raises(CommandError, match=r"its highest migration is 19 .* let the Rust"):
            _run("--schema", "gw_017", *args)
    with connection.cursor() as cursor:
        assert detect_flavour(cursor, "gw_017") is Flavour.NODE
