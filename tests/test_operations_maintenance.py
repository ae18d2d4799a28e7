"""Adding the recovery objects and the opt-in indexes through worker_admin/operations/ (issue 14,
points 1, 3, 6 for maintenance): the preview says exactly what will change, one confirmation
acts once whichever face and however many requests send it, and the audit log says so once."""

from __future__ import annotations

import html
import re
from collections import Counter

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client

from tests.test_api import Api, user_with_token
from tests.test_operations_guarantees import THREADS, _all_at_once, _same_session
from worker_admin import indexes
from worker_admin.audit import AuditEntry
from worker_admin.installer import Flavour, detect_flavour
from worker_admin.operations import indexes as index_operation
from worker_admin.operations import recovery_objects
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.roles import ensure_groups
from worker_admin.schema import clear_capabilities_cache
from worker_admin.utils import WorkerUtils

NODE_SCHEMA = "gw_race_node"
RECOVERY_URL, INDEX_URL = "/maintenance/add-recovery/", "/maintenance/index/"
API_RECOVERY = "/api/maintenance/recovery-objects/"
API_INDEX = "/api/maintenance/indexes/"
INDEX = "console_jobs_task"


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def _token(response) -> str:
    match = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(1)


@pytest.fixture
def admin_twins(worker_rows, django_user_model):
    """One admin with a signed-in page session and an API token (committed: threads see it)."""
    ensure_groups()
    user, secret = user_with_token(django_user_model, "admin", "keeper")
    page = Client()
    page.force_login(user)
    return user, page, secret


@pytest.fixture
def node_schema(worker_rows, settings):
    """A graphile-worker 0.18 schema as Node installs it: no recovery objects yet."""
    WorkerUtils(schema=NODE_SCHEMA).migrate(recovery=False)
    settings.GRAPHILE_WORKER_SCHEMA = NODE_SCHEMA
    clear_capabilities_cache()
    yield NODE_SCHEMA
    with connections[settings.WORKER_DATABASE].cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {NODE_SCHEMA} CASCADE")
    clear_capabilities_cache()


@pytest.fixture
def no_index(worker_rows):
    alias, schema = settings.WORKER_DATABASE, settings.GRAPHILE_WORKER_SCHEMA
    indexes.drop(alias, schema, INDEX)
    yield
    indexes.drop(alias, schema, INDEX)


def _flavour(schema: str) -> Flavour:
    with connections[settings.WORKER_DATABASE].cursor() as cursor:
        return detect_flavour(cursor, schema)


# -- the previews say what will change ---------------------------------------------------------


def test_add_recovery_preview__lists_the_objects_and_the_button_says_what_happens(
    admin_twins, node_schema
):
    _user, page, _secret = admin_twins
    preview = page.post(RECOVERY_URL)
    text = _text(preview).replace('"', "")
    assert f"{node_schema}._private_workers" in text
    for name in ("worker_heartbeat", "recover_dead_worker_jobs", "delete_stale_workers"):
        assert f"function {node_schema}.{name}" in text
    assert "Create 8 objects in gw_race_node" in text  # the button
    assert _flavour(node_schema) is Flavour.NODE  # a preview changes nothing
    assert not AuditEntry.objects.filter(action="add_recovery").exists()


def test_index_preview__shows_the_sql_size_and_write_cost(admin_twins, no_index):
    _user, page, secret = admin_twins
    text = _text(page.post(INDEX_URL, {"name": INDEX, "action": "create"}))
    assert f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX}" in text
    assert "absent → present" in text and "Estimated size" in text
    assert indexes.INDEXES[INDEX].write_cost in text
    assert f"Build {INDEX}" in text  # the button says what will happen
    shown = Api(Client(), secret).post(API_INDEX + "preview", {"name": INDEX}).json()
    assert shown["sql"].startswith("CREATE INDEX CONCURRENTLY") and shown["before"] == "absent"
    assert shown["estimated_bytes"] > 0 and shown["write_cost"]
    assert not indexes.present(settings.WORKER_DATABASE, settings.GRAPHILE_WORKER_SCHEMA, INDEX)


def test_refusals_name_the_admin_role(login_as, no_index, node_schema):
    operator = login_as("operator", "opal")
    for url, form in ((RECOVERY_URL, {}), (INDEX_URL, {"name": INDEX, "action": "create"})):
        response = operator.post(url, form)
        assert response.status_code == 403
        assert "needs the admin role" in _text(response)
        assert "with the operator role" in _text(response)
    assert _flavour(node_schema) is Flavour.NODE


def test_index_preview__bad_names_and_actions_are_refused_in_a_sentence(admin_twins, no_index):
    _user, page, secret = admin_twins
    bad = page.post(INDEX_URL, {"name": "pg_class", "action": "create"})
    assert bad.status_code == 400 and "no opt-in index called" in _text(bad)
    bad = page.post(INDEX_URL, {"name": INDEX, "action": "vacuum"})
    assert bad.status_code == 400 and "Choose create or drop" in _text(bad)
    api = Api(Client(), secret).post(API_INDEX + "preview", {"name": INDEX, "action": "drop"})
    assert api.status_code == 409 and "does not exist" in api.json()["detail"]


# -- acting once -------------------------------------------------------------------------------


def test_add_recovery__one_confirmation_from_page_and_api_together_adds_once(
    admin_twins, node_schema
):
    _user, page, secret = admin_twins
    token = _token(page.post(RECOVERY_URL))
    calls = iter(range(THREADS))

    def send():
        if next(calls) % 2:
            return _same_session(page).post(RECOVERY_URL, {"token": token, "reason": "race"})
        return Api(Client(), secret).post(API_RECOVERY + "apply", {"fingerprint": token})

    replies = _all_at_once(send)

    statuses = Counter(r.status_code for r in replies)
    assert statuses[302] + statuses[200] == 1, statuses
    assert statuses[400] + statuses[409] == THREADS - 1, statuses
    done = list(AuditEntry.objects.filter(action="add_recovery", outcome="done"))
    assert len(done) == 1, [e.summary for e in done]
    assert done[0].summary.startswith("added _private_workers")
    assert done[0].parameters["objects"]  # what was created, on the record
    for reply in replies:
        if reply.status_code in (400, 409):
            assert "already used" in _text(reply) and f"#{done[0].pk}" in _text(reply)
    assert _flavour(node_schema) is Flavour.RUST_RECOVERY


def test_add_recovery__one_page_confirmation_sent_by_many_requests_adds_once(
    admin_twins, node_schema
):
    """Page only: the same test runs against the code before operations/recovery_objects.py
    (a session token redeemed by every request that loaded the session before it was spent)."""
    _user, page, _secret = admin_twins
    token = _token(page.post(RECOVERY_URL))

    replies = _all_at_once(lambda: _same_session(page).post(RECOVERY_URL, {"token": token}))

    assert sum(r.status_code == 302 for r in replies) == 1, [r.status_code for r in replies]
    assert AuditEntry.objects.filter(action="add_recovery", outcome="done").count() == 1
    assert _flavour(node_schema) is Flavour.RUST_RECOVERY


def test_index_create__one_confirmation_from_page_and_api_together_builds_once(
    admin_twins, no_index
):
    _user, page, secret = admin_twins
    form = {"name": INDEX, "action": "create"}
    token = _token(page.post(INDEX_URL, form))
    calls = iter(range(THREADS))

    def send():
        if next(calls) % 2:
            return _same_session(page).post(INDEX_URL, {"token": token, "reason": "race"})
        return Api(Client(), secret).post(API_INDEX + "apply", form | {"fingerprint": token})

    replies = _all_at_once(send)

    statuses = Counter(r.status_code for r in replies)
    assert statuses[302] + statuses[200] == 1, statuses
    assert statuses[400] + statuses[409] == THREADS - 1, statuses
    entries = list(
        AuditEntry.objects.filter(action="index_create").exclude(outcome="rejected").order_by("id")
    )
    assert [e.outcome for e in entries] == ["started", "done"], [e.outcome for e in entries]
    rejected = AuditEntry.objects.filter(action__startswith="index", outcome="rejected")
    assert rejected.count() == THREADS - 1  # each refused apply is on the record
    assert entries[1].parameters["started_entry"] == entries[0].pk
    for reply in replies:
        if reply.status_code in (400, 409):
            assert "already used" in _text(reply) and f"#{entries[0].pk}" in _text(reply)
    assert indexes.present(settings.WORKER_DATABASE, settings.GRAPHILE_WORKER_SCHEMA, INDEX)


def test_index_create__one_api_fingerprint_applied_by_many_requests_builds_once(
    admin_twins, no_index
):
    _user, _page, secret = admin_twins
    shown = Api(Client(), secret).post(API_INDEX + "preview", {"name": INDEX}).json()
    body = {"name": INDEX, "action": "create", "fingerprint": shown["fingerprint"]}

    replies = _all_at_once(lambda: Api(Client(), secret).post(API_INDEX + "apply", body))

    assert Counter(r.status_code for r in replies) == Counter({200: 1, 409: THREADS - 1})
    started = AuditEntry.objects.get(action="index_create", outcome="started")
    assert AuditEntry.objects.filter(action="index_create", outcome="done").count() == 1
    for reply in replies:
        if reply.status_code == 409:
            assert reply.json()["audit_entry_id"] == started.pk


def test_index_apply__a_failed_build_leaves_a_failed_entry_after_the_started_one(
    admin_twins, no_index
):
    """The build runs outside the claim's transaction: its failure is its own entry."""
    user, _page, _secret = admin_twins
    shown = index_operation.preview(user, INDEX, "create")
    with connections[settings.WORKER_DATABASE].cursor() as cursor:  # the table is gone
        cursor.execute(
            f"ALTER TABLE {settings.GRAPHILE_WORKER_SCHEMA}._private_jobs RENAME TO _jobs_away"
        )
    try:
        result = index_operation.apply(user, shown.token, via="web")
    finally:
        with connections[settings.WORKER_DATABASE].cursor() as cursor:
            cursor.execute(
                f"ALTER TABLE {settings.GRAPHILE_WORKER_SCHEMA}._jobs_away RENAME TO _private_jobs"
            )
    assert not result.ok and "does not exist" in result.error
    entries = list(AuditEntry.objects.filter(action="index_create").order_by("id"))
    assert [e.outcome for e in entries] == ["started", "failed"]
    assert "does not exist" in entries[1].error
    with pytest.raises(AlreadyUsed):  # it ran (and failed): preview again to retry
        index_operation.apply(user, shown.token, via="web")


def test_index_apply__refused_inside_a_transaction(admin_twins, no_index):
    from django.db import transaction

    user, _page, _secret = admin_twins
    shown = index_operation.preview(user, INDEX, "create")
    with transaction.atomic(), pytest.raises(Refused, match="cannot run inside a transaction"):
        index_operation.apply(user, shown.token, via="web")
    assert not AuditEntry.objects.filter(action="index_create").exists()


def test_migrate_add_recovery__goes_through_the_operation_and_is_audited(node_schema):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(
        "graphile_worker", "--schema", node_schema, "migrate", "--add-recovery", stdout=out
    )
    assert "Added the worker-recovery objects." in out.getvalue()
    entry = AuditEntry.objects.get(action=recovery_objects.ACTION)
    assert (entry.outcome, entry.via, entry.worker_schema) == ("done", "cli", node_schema)
    assert any("_private_workers" in item for item in entry.parameters["objects"])
    call_command(
        "graphile_worker", "--schema", node_schema, "migrate", "--add-recovery", stdout=out
    )
    assert "already present; nothing changed" in out.getvalue()
    assert AuditEntry.objects.filter(action=recovery_objects.ACTION).count() == 1
