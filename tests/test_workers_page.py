"""Workers page: registered workers with health, and every lock holder with its kind."""

import html
import re

from worker_admin.fleet import holder_kind


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def _register(jobs, worker_id: str, age: str, schema: str = "graphile_worker") -> None:
    jobs.sql(
        f"SELECT {schema}.worker_heartbeat(%s, json_build_object('pid', 42, 'hostname', 'h1'))",
        [worker_id],
    )
    jobs.sql(
        f"UPDATE {schema}._private_workers SET last_heartbeat_at = now() - %s::interval "
        "WHERE id = %s",
        [age, worker_id],
    )


def test_holder_kind__from_the_id_format():
    assert [
        holder_kind(i)
        for i in ("graphile_worker_ab12", "pool-9f", "otpool-1a", "worker-3c", "my-worker")
    ] == ["Rust worker", "Node pool", "Node pool", "Node worker", "unknown"]


def test_workers__registered_health_and_lock_holders(console, jobs):
    _register(jobs, "graphile_worker_aa", "10 seconds")
    _register(jobs, "graphile_worker_bb", "12 minutes")
    jobs.locked(by="graphile_worker_aa", age="2 minutes")
    jobs.locked(by="graphile_worker_bb", age="20 minutes")
    jobs.locked(by="graphile_worker_cc", age="6 hours")  # never registered: an orphan
    jobs.locked(by="pool-7f3a", age="3 minutes")
    response = console.get("/workers/")
    fleet = response.context["fleet"]
    assert [(w.id, w.stale, w.jobs_held, w.pid, w.host) for w in fleet.workers] == [
        ("graphile_worker_bb", True, 1, 42, "h1"),  # stale ones first
        ("graphile_worker_aa", False, 1, 42, "h1"),
    ]
    assert [(h.id, h.kind, h.registered, h.stale, h.past_four_hours) for h in fleet.holders] == [
        ("graphile_worker_cc", "Rust worker", False, None, True),
        ("graphile_worker_bb", "Rust worker", True, True, False),
        ("pool-7f3a", "Node pool", False, None, False),
        ("graphile_worker_aa", "Rust worker", True, False, False),
    ]
    text = _text(response)
    assert "1 stale" in text and "past the 4-hour mark" in text and "no (Node)" in text


def test_workers__a_big_fleet_shows_what_needs_attention_first(console, jobs, monkeypatch):
    from worker_admin.views import workers

    monkeypatch.setattr(workers, "ROWS_SHOWN", 3)
    for n in range(5):
        _register(jobs, f"graphile_worker_{n}", "20 minutes" if n == 4 else "5 seconds")
        jobs.locked(by=f"graphile_worker_{n}", age=f"{10 + n} minutes")
    response = console.get("/workers/")
    shown = [w.id for w in response.context["shown_workers"]]
    assert shown == ["graphile_worker_4", "graphile_worker_0", "graphile_worker_1"]
    held = [h.id for h in response.context["shown_holders"]]
    assert held == ["graphile_worker_4", "graphile_worker_3", "graphile_worker_2"]
    text = _text(response)
    assert text.count("Showing the first 3 of 5") == 2 and "show all" in text
    everything = console.get("/workers/", {"threshold": "5", "all": "1"})
    assert len(everything.context["shown_workers"]) == len(everything.context["shown_holders"]) == 5
    assert "Showing the first" not in _text(everything)


def test_workers__threshold_changes_staleness(console, jobs):
    _register(jobs, "graphile_worker_aa", "7 minutes")
    assert console.get("/workers/").context["fleet"].workers[0].stale
    assert not console.get("/workers/", {"threshold": "10"}).context["fleet"].workers[0].stale
    bad = console.get("/workers/", {"threshold": "<script>"})
    assert bad.status_code == 200 and "Ignored the threshold" in _text(bad)
    assert "<script>" not in bad.content.decode()


def test_workers__without_recovery_extension_shows_lock_holders_only(console, jobs, settings):
    from worker_admin.utils import WorkerUtils

    WorkerUtils(schema="gw_node_fleet").migrate(recovery=False)
    settings.GRAPHILE_WORKER_SCHEMA = "gw_node_fleet"
    response = console.get("/workers/")
    assert response.context["fleet"].workers is None
    assert "worker-recovery extension" in _text(response)


def test_workers__empty_and_htmx_fragment(console, db):
    response = console.get("/workers/", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="workers-body"')
    assert "nothing is running right now" in _text(response)


def test_maintenance__shows_schema_and_migrations(console, db):
    response = console.get("/maintenance/")
    text = _text(response)
    assert response.status_code == 200
    assert "rust-recovery" in text and "Installed: _private_workers" in text
    assert [m.id for m in response.context["migrations"]][:2] == [20, 19]


def test_maintenance__admin_adds_recovery_with_preview_and_audit(client, db, settings):
    from django.contrib.auth.models import Group, User

    from worker_admin.audit import AuditEntry
    from worker_admin.schema import clear_capabilities_cache
    from worker_admin.utils import WorkerUtils

    WorkerUtils(schema="gw_node_maint").migrate(recovery=False)
    settings.GRAPHILE_WORKER_SCHEMA = "gw_node_maint"
    clear_capabilities_cache()
    operator = User.objects.create_user("op2", password="pw-123456789")
    operator.groups.add(Group.objects.get(name="operator"))
    client.force_login(operator)
    assert "Add the recovery objects" not in client.get("/maintenance/").content.decode()
    assert client.post("/maintenance/add-recovery/").status_code == 403

    admin = User.objects.create_user("adm", password="pw-123456789")
    admin.groups.add(Group.objects.get(name="admin"))
    client.force_login(admin)
    preview = client.post("/maintenance/add-recovery/")
    assert "list_stale_workers" in preview.content.decode()
    token = re.search(r'name="token" value="([^"]+)"', preview.content.decode()).group(1)
    client.post("/maintenance/add-recovery/", {"token": token, "reason": "enable sweeps"})
    clear_capabilities_cache()
    from worker_admin.schema import capabilities

    assert capabilities().has_recovery
    entry = AuditEntry.objects.get(action="add_recovery", outcome="done")
    assert entry.reason == "enable sweeps" and entry.actor_name == "adm"


def test_fleet__stale_at_exactly_the_threshold(jobs):
    """The workers page counts a heartbeat exactly `threshold` old as stale, like
    list_active_workers and Rust; the test's transaction fixes now()."""
    from datetime import timedelta

    from worker_admin.fleet import fleet

    _register(jobs, "graphile_worker_exact", "5 minutes")
    _register(jobs, "graphile_worker_under", "4 minutes 59.999999 seconds")
    jobs.locked(by="graphile_worker_exact", age="1 minute")

    result = fleet("default", timedelta(minutes=5), has_workers_table=True)

    assert [(w.id, w.stale) for w in result.workers] == [
        ("graphile_worker_exact", True),
        ("graphile_worker_under", False),
    ]
    assert [(h.id, h.stale) for h in result.holders] == [("graphile_worker_exact", True)]


def test_maintenance__add_recovery_on_a_0_17_database_gives_the_sentence(client, db, settings):
    """Issue 12, item 3: refused with one sentence (no 500), audited, nothing changed."""
    from django.contrib.auth.models import Group, User
    from django.db import connections

    from worker_admin.audit import AuditEntry
    from worker_admin.schema import capabilities, clear_capabilities_cache
    from worker_admin.utils import WorkerUtils

    WorkerUtils(schema="gw_017_maint").migrate(recovery=False)
    with connections[settings.WORKER_DATABASE].cursor() as cursor:
        cursor.execute("DELETE FROM gw_017_maint.migrations WHERE id = 20")
    settings.GRAPHILE_WORKER_SCHEMA = "gw_017_maint"
    clear_capabilities_cache()
    admin = User.objects.create_user("adm17", password="pw-123456789")
    admin.groups.add(Group.objects.get(name="admin"))
    client.force_login(admin)
    # Refused at the preview already (operations/recovery_objects.py checks what the apply would).
    response = client.post("/maintenance/add-recovery/")

    assert response.status_code == 409
    assert 'name="token"' not in response.content.decode()
    assert "its highest migration is 19" in _text(response)
    assert "let the Rust runner migrate it" in _text(response)
    clear_capabilities_cache()
    assert not capabilities().has_recovery
    entry = AuditEntry.objects.get(action="add_recovery")
    assert entry.outcome == "rejected" and "highest migration is 19" in entry.error
