"""Roles as groups with permissions, READ_ONLY at the server, and the append-only audit log."""

import pytest
from django.contrib.auth.models import Group

from worker_admin.audit import AppendOnlyError, AuditEntry
from worker_admin.roles import (
    ADMIN,
    OPERATOR,
    VIEWER,
    can_act_on_jobs,
    can_run_maintenance,
    role_of,
)


@pytest.fixture
def member(django_user_model):
    def make(role: str):
        user = django_user_model.objects.create_user(f"{role}-user", password="pw-123456789")
        user.groups.add(Group.objects.get(name=role))
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make


def test_roles__groups_carry_their_permissions(db, member):
    viewer, operator, admin = member(VIEWER), member(OPERATOR), member(ADMIN)
    assert [can_act_on_jobs(u) for u in (viewer, operator, admin)] == [False, True, True]
    assert [can_run_maintenance(u) for u in (viewer, operator, admin)] == [False, False, True]
    assert [role_of(u) for u in (viewer, operator, admin)] == [VIEWER, OPERATOR, ADMIN]
    assert viewer.has_perm("worker_admin.view_auditentry")
    assert admin.has_perm("auth.change_user") and not operator.has_perm("auth.change_user")


def test_roles__read_only_turns_every_write_off(db, member, settings):
    settings.READ_ONLY = True
    admin = member(ADMIN)
    assert not can_act_on_jobs(admin) and not can_run_maintenance(admin)


def _entry(**overrides) -> AuditEntry:
    values = {
        "actor_name": "oncall",
        "via": AuditEntry.Via.WEB,
        "action": "complete",
        "worker_schema": "graphile_worker",
        "requested_ids": [1, 2, 3],
        "changed_ids": [1, 2],
        "skipped_ids": [3],
        "outcome": AuditEntry.Outcome.DONE,
        "summary": "changed 2 of 3; 1 skipped because a worker holds it",
    }
    return AuditEntry.objects.create(**(values | overrides))


def test_audit__append_only(db):
    entry = _entry()
    entry.summary = "rewritten history"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(summary="x")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).summary.startswith("changed 2 of 3")


def test_audit__entries_for_a_job(db):
    first = _entry(requested_ids=[7, 8], changed_ids=[7])
    _entry(requested_ids=[9], changed_ids=[9])
    assert list(AuditEntry.objects.for_job(8)) == [first]
    assert list(AuditEntry.objects.for_job(7)) == [first]


def test_audit__a_jobs_entries_are_found_through_the_id_indexes(db):
    """A job's page looks its entries up in the GIN indexes on the id lists, not by reading
    every entry (the planner is told to avoid the scan it would pick on a table this small)."""
    from django.db import connection, transaction

    _entry(requested_ids=[7, 8], changed_ids=[7])
    sql, params = AuditEntry.objects.for_job(7).order_by("-id")[:11].query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "wa_audit_requested_ids" in plan and "wa_audit_changed_ids" in plan, plan


def test_audit_page__needs_the_view_permission(client, db, django_user_model, member):
    nobody = django_user_model.objects.create_user("nobody", password="pw-123456789")
    client.force_login(nobody)
    assert client.get("/audit/").status_code == 403
    client.force_login(member(VIEWER))
    assert client.get("/audit/").status_code == 200


def test_audit_page__filters_and_pages(client, db, member):
    client.force_login(member(VIEWER))
    for n in range(55):
        _entry(actor_name="alice" if n % 2 else "bob", requested_ids=[n + 1])
    _entry(action="reschedule", outcome=AuditEntry.Outcome.FAILED, error="deadlock detected")
    first = client.get("/audit/")
    assert len(first.context["entries"]) == 50 and first.context["older_url"]
    second = client.get("/audit/" + first.context["older_url"])
    assert len(second.context["entries"]) == 6
    assert {e.actor_name for e in client.get("/audit/", {"user": "alice"}).context["entries"]} == {
        "alice"
    }
    failed = client.get("/audit/", {"outcome": "failed"}).context["entries"]
    assert [e.error for e in failed] == ["deadlock detected"]
    assert [e.requested_ids for e in client.get("/audit/", {"job": "7"}).context["entries"]] == [
        [7]
    ]
    bad = client.get("/audit/", {"job": "seven", "after": "soon"})
    assert bad.status_code == 200 and len(bad.context["problems"]) == 2


def test_audit_page__lists_sizes_without_loading_ids_or_images(
    client, db, member, django_assert_max_num_queries
):
    """Bulk entries carry thousands of ids and a before-image of every row: the list shows their
    sizes and the undo button without reading them (a 10,000-job apply made the page slow)."""
    client.force_login(member(OPERATOR))
    image = [{"id": n, "payload": {"blob": "x" * 100}} for n in range(1, 2001)]
    for _ in range(20):
        _entry(
            action="reschedule",
            requested_ids=list(range(1, 2001)),
            changed_ids=list(range(1, 1501)),
            skipped_ids=list(range(1501, 1601)),
            before_image=image,
        )
    plain = _entry(action="reschedule", requested_ids=[9], changed_ids=[9], skipped_ids=[])
    with django_assert_max_num_queries(12):
        response = client.get("/audit/")
    assert response.content.decode().count("2000 requested, 1500 changed, 100 skipped") == 20
    entries = response.context["entries"]
    assert all({"before_image", "requested_ids"} <= e.get_deferred_fields() for e in entries)
    undoable = response.context["undoable_ids"]
    assert len(undoable) == 20 and plain.pk not in undoable


def test_audit_page__exports_csv_and_json(client, db, member):
    import csv
    import io
    import json

    client.force_login(member(VIEWER))
    _entry(reason='=HYPERLINK("http://evil")', requested_ids=[4, 5])
    response = client.get("/audit/", {"format": "csv"})
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["reason"].startswith("'=")  # a spreadsheet will not run it
    assert json.loads(rows[0]["requested_ids"]) == [4, 5]
    data = json.loads(client.get("/audit/", {"format": "json"}).content)
    assert data[0]["action"] == "complete" and data[0]["changed_ids"] == [1, 2]


def test_console_user_command__creates_and_changes_roles(db, django_user_model):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("console_user", "dana", "--role", "operator", stdout=out)
    assert out.getvalue().startswith("Created dana as operator with password ")
    dana = django_user_model.objects.get(username="dana")
    assert can_act_on_jobs(dana) and not can_run_maintenance(dana) and not dana.is_staff
    call_command("console_user", "dana", "--role", "admin", stdout=StringIO())
    dana = django_user_model.objects.get(username="dana")
    assert role_of(dana) == ADMIN and dana.is_staff
    assert list(dana.groups.values_list("name", flat=True)) == ["admin"]
