"""The JSON API: token authentication and the reads, over real HTTP (Django's test client) on
real PostgreSQL."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group

from worker_admin.api import tokens
from worker_admin.audit import AuditEntry


class Api:
    """A test client that sends a bearer token and JSON."""

    def __init__(self, client, secret: str | None) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    def get(self, path: str, **query):
        return self.client.get(path, query, headers=self.headers)

    def post(self, path: str, body=None, *, raw: str | bytes | None = None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            path, data=data, content_type="application/json", headers=self.headers
        )


def user_with_token(django_user_model, role: str, username: str, **user_fields):
    """(user, secret): a new user with one role and an API token (other API test files use it
    for their fixtures too)."""
    user = django_user_model.objects.create_user(username, password="pw-123456789", **user_fields)
    user.groups.add(Group.objects.get(name=role))
    return user, tokens.issue(user, name=f"{username}'s script", via="cli").secret


@pytest.fixture
def issue_token(django_user_model):
    """issue_token("operator", "op") → (user, secret)."""
    return lambda role, username, **fields: user_with_token(
        django_user_model, role, username, **fields
    )


@pytest.fixture
def viewer_api(client, issue_token):
    return Api(client, issue_token("viewer", "viewer1")[1])


@pytest.fixture
def operator_api(client, issue_token):
    return Api(client, issue_token("operator", "op1")[1])


@pytest.fixture
def admin_api(client, issue_token):
    return Api(client, issue_token("admin", "admin1")[1])


# -- authentication ------------------------------------------------------------------------------


def test_api__without_a_token_is_401_json_not_a_login_redirect(client, jobs):
    jobs.ready()
    response = client.get("/api/jobs")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert "Bearer" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/api/jobs/actions/preview", {}).status_code == 401


def test_api__a_wrong_or_malformed_token_is_401(client, jobs, issue_token):
    _user, secret = issue_token("viewer", "v")
    for header in (
        f"Bearer {secret}x",
        f"Bearer {secret[:-1]}",
        "Bearer gwc_",
        "Bearer ",
        f"Token {secret}",
        f"Basic {secret}",
        "Bearer " + "x" * 5000,
    ):
        response = client.get("/api/stats", headers={"Authorization": header})
        assert response.status_code == 401, header


def test_api__a_revoked_token_is_401(client, jobs, issue_token):
    user, secret = issue_token("viewer", "v")
    api = Api(client, secret)
    assert api.get("/api/stats").status_code == 200
    tokens.revoke(tokens.ApiToken.objects.get(user=user), actor="test", via="cli")
    assert api.get("/api/stats").status_code == 401


def test_api__an_inactive_users_token_is_401(client, jobs, issue_token):
    user, secret = issue_token("operator", "gone")
    user.is_active = False
    user.save()
    assert Api(client, secret).get("/api/stats").status_code == 401


def test_api__a_session_login_is_not_an_api_credential(console, jobs):
    """A browser session must not reach the API: only the token authenticates (so no CSRF)."""
    assert console.get("/api/stats").status_code == 401


def test_api__the_token_records_when_it_was_last_used(viewer_api, jobs):
    token = tokens.ApiToken.objects.get()
    assert token.last_used_at is None
    assert viewer_api.get("/api/stats").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_api__schema_and_docs_for_token_holders_and_signed_in_users(
    client, viewer_api, django_user_model
):
    anonymous = client.get("/api/schema")
    assert anonymous.status_code == 401 and "API token" in anonymous.json()["detail"]
    assert client.get("/api/docs")["Location"].startswith("/login/?next=/api/docs")
    assert client.get("/api/schema", HTTP_AUTHORIZATION="Bearer gwc_wrong").status_code == 401

    schema = viewer_api.get("/api/schema")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/jobs" in paths and "/api/jobs/actions/apply" in paths
    assert "/api/maintenance/sweep/preview" in paths

    client.force_login(django_user_model.objects.create_user("reader"))
    assert client.get("/api/docs").status_code == 200
    assert client.get("/api/schema").status_code == 200


# -- reads ----------------------------------------------------------------------------------------


def test_jobs__lists_with_the_console_filters(viewer_api, jobs):
    ready = jobs.ready("send_email", queue_name="mail")
    jobs.scheduled("send_email")
    jobs.failed("resize", error="disk full")
    response = viewer_api.get("/api/jobs", state="ready")
    assert response.status_code == 200
    body = response.json()
    assert [j["id"] for j in body["jobs"]] == [ready.id]
    assert body["jobs"][0]["state"] == "ready"
    assert body["jobs"][0]["queue_name"] == "mail"
    assert "payload" not in body["jobs"][0]
    assert body["next_cursor"] is None

    failed = viewer_api.get("/api/jobs", task="resize").json()["jobs"]
    assert [(j["task_identifier"], j["state"]) for j in failed] == [("resize", "failed")]
    assert viewer_api.get("/api/jobs", search="disk full").json()["jobs"][0]["last_error"] == (
        "disk full"
    )
    assert viewer_api.get("/api/jobs", queue="mail").json()["jobs"][0]["id"] == ready.id
    assert viewer_api.get("/api/jobs", queue="nope").json()["jobs"] == []


def test_jobs__key_filter_and_payloads_on_request(viewer_api, jobs):
    job = jobs.add("send_email", {"to": "a@example.org"}, job_key="welcome:1")
    jobs.add("send_email", {"to": "b@example.org"})
    body = viewer_api.get("/api/jobs", key="welcome:1", payload="true").json()
    assert [(j["id"], j["payload"]) for j in body["jobs"]] == [(job.id, {"to": "a@example.org"})]


def test_jobs__the_cursor_pages_through_every_job_once(viewer_api, jobs):
    made = {jobs.add("task_a").id for _ in range(7)}
    seen, cursor, pages = [], None, 0
    for _ in range(10):  # bounded: a cursor that never ends fails the test instead of hanging
        query = {"limit": 3, "sort": "oldest"} | ({"cursor": cursor} if cursor else {})
        body = viewer_api.get("/api/jobs", **query).json()
        seen += [j["id"] for j in body["jobs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    else:
        pytest.fail(f"the cursor did not end after {pages} pages: {seen}")
    assert pages == 3
    assert seen == sorted(made)


def test_jobs__bad_filters_and_cursors_are_refused_with_a_sentence(viewer_api, jobs):
    jobs.ready()
    for query, status in (
        ({"state": "exploded"}, 422),
        ({"limit": 0}, 422),
        ({"limit": 10_000}, 422),
        ({"priority_min": 40_000}, 422),
        ({"created_after": "yesterday"}, 422),
        ({"created_after": "2030-01-01T00:00:00"}, 422),  # no UTC offset
        ({"cursor": "not-a-cursor"}, 400),
        ({"priority_min": 5, "priority_max": 1}, 400),
        ({"unknown": "x"}, 422),
        ({"task": "a\x00b"}, 422),
    ):
        response = viewer_api.get("/api/jobs", **query)
        assert response.status_code == status, (query, response.content)
        message = response.json()["detail"]
        assert isinstance(message, str) and message.endswith((".", ".)")), message


def test_dates__offsets_postgresql_does_not_take_are_read_in_utc(viewer_api, jobs):
    """Found by schemathesis: Python takes UTC offsets up to ±23:59, PostgreSQL only ±15:59."""
    jobs.ready()
    far_offset = "2020-06-13T02:23:15-16:31"
    assert viewer_api.get("/api/audit", before=far_offset).status_code == 200
    assert viewer_api.get("/api/jobs", created_after=far_offset).json()["jobs"] != []
    too_early = viewer_api.get("/api/jobs", created_after="0001-01-01T00:00:00+05:00")
    assert too_early.status_code == 422
    assert "out of range" in too_early.json()["detail"]


def test_jobs__a_cursor_for_another_sort_is_refused(viewer_api, jobs):
    for _ in range(3):
        jobs.add()
    cursor = viewer_api.get("/api/jobs", limit=1, sort="oldest").json()["next_cursor"]
    response = viewer_api.get("/api/jobs", limit=1, sort="newest", cursor=cursor)
    assert response.status_code == 400
    assert "another sort order" in response.json()["detail"]


def test_job__one_job_with_its_payload(viewer_api, jobs):
    job = jobs.add("send_email", {"to": "a@example.org"}, priority=3)
    body = viewer_api.get(f"/api/jobs/{job.id}").json()
    assert body["id"] == job.id
    assert body["payload"] == {"to": "a@example.org"}
    assert body["priority"] == 3


def test_job__unknown_ids_are_404_json(viewer_api, jobs):
    for path in ("/api/jobs/99999999", f"/api/jobs/{2**63 - 1}"):
        response = viewer_api.get(path)
        assert response.status_code == 404
        assert "There is no job" in response.json()["detail"]
    for path in ("/api/jobs/0", f"/api/jobs/{2**70}", "/api/jobs/-1"):
        assert viewer_api.get(path).status_code in (404, 422), path


def test_job__payload_goes_through_redaction(viewer_api, jobs, settings):
    settings.REDACT_PAYLOAD_PATHS = ["password"]
    job = jobs.add("login", {"user": "a", "password": "hunter2"})
    body = viewer_api.get(f"/api/jobs/{job.id}").json()
    assert body["payload"]["user"] == "a"
    assert body["payload"]["password"] != "hunter2"
    listed = viewer_api.get("/api/jobs", payload="true").json()["jobs"][0]["payload"]
    assert listed["password"] != "hunter2"


def test_stats__counts_by_state_task_and_queue(viewer_api, jobs):
    jobs.ready("a", queue_name="q1")
    jobs.ready("a")
    jobs.failed("b")
    jobs.locked()
    body = viewer_api.get("/api/stats").json()
    assert body["counts"] == {
        "ready": 2,
        "scheduled": 0,
        "locked": 1,
        "failed": 1,
        "retrying": 0,
        "total": 4,
    }
    assert body["exact"] is True
    by_task = {row["task"]: row["counts"]["ready"] for row in body["by_task"]}
    assert by_task["a"] == 2
    assert [row["queue"] for row in body["by_queue"]] == ["q1"]


def test_queues_and_tasks(viewer_api, jobs):
    jobs.ready("a", queue_name="emails")
    jobs.failed("b", queue_name="reports")
    queues = viewer_api.get("/api/queues").json()["queues"]
    assert {q["name"]: q["counts"]["total"] for q in queues} == {"emails": 1, "reports": 1}
    assert [q["name"] for q in viewer_api.get("/api/queues", name="rep").json()["queues"]] == [
        "reports"
    ]
    tasks = viewer_api.get("/api/tasks").json()["tasks"]
    assert {t["identifier"]: t["counts"]["failed"] for t in tasks} == {"a": 0, "b": 1}


def test_workers_and_lock_holders(viewer_api, jobs):
    jobs.sql(
        f"INSERT INTO {jobs.q}._private_workers (id, last_heartbeat_at, started_at, metadata) "
        "VALUES ('graphile_worker_dead', now() - interval '1 hour', now() - interval '2 hours', "
        """'{"hostname": "box1", "pid": 42}')"""
    )
    jobs.locked(by="graphile_worker_dead")
    jobs.locked(by="pool-abc123")
    body = viewer_api.get("/api/workers", threshold_minutes=10).json()
    (worker,) = body["workers"]
    assert (worker["id"], worker["stale"], worker["host"], worker["jobs_held"]) == (
        "graphile_worker_dead",
        True,
        "box1",
        1,
    )
    holders = {h["id"]: (h["kind"], h["registered"]) for h in body["lock_holders"]}
    assert holders == {
        "graphile_worker_dead": ("Rust worker", True),
        "pool-abc123": ("Node pool", False),
    }
    assert viewer_api.get("/api/workers", threshold_minutes=0).status_code == 422


def test_failures__grouped_by_task_and_normalised_error(viewer_api, jobs):
    jobs.failed("charge", error="card 4242 declined")
    jobs.failed("charge", error="card 1111 declined")
    jobs.retrying("charge", error="timeout")
    groups = viewer_api.get("/api/failures").json()["groups"]
    assert sorted((g["task"], g["failed"], g["retrying"]) for g in groups) == [
        ("charge", 0, 1),
        ("charge", 2, 0),
    ]
    only_failed = viewer_api.get("/api/failures", state="failed").json()["groups"]
    assert [g["failed"] for g in only_failed] == [2]


def test_audit__paged_newest_first_and_filtered(viewer_api, jobs):
    for n in range(5):
        AuditEntry.objects.create(
            actor_name="someone",
            via="web",
            action="complete" if n % 2 else "retry",
            outcome="done",
            worker_schema="graphile_worker",
            requested_ids=[n + 1],
        )
    first = viewer_api.get("/api/audit", limit=2, action="complete").json()
    assert [e["action"] for e in first["entries"]] == ["complete", "complete"]
    assert first["next_before_id"] is None
    page = viewer_api.get("/api/audit", limit=3, user="someone").json()
    rest = viewer_api.get(
        "/api/audit", limit=3, user="someone", before_id=page["next_before_id"]
    ).json()
    ids = [e["id"] for e in page["entries"] + rest["entries"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert [e["requested_ids"] for e in viewer_api.get("/api/audit", job=3).json()["entries"]] == [
        [3]
    ]


def test_audit__needs_the_audit_permission(client, django_user_model, jobs):
    user = django_user_model.objects.create_user("norole")
    secret = tokens.issue(user, name="x", via="cli").secret
    api = Api(client, secret)
    assert api.get("/api/stats").status_code == 200
    assert api.get("/api/audit").status_code == 403


def test_reads__say_so_when_the_worker_schema_is_missing(viewer_api, jobs, settings):
    settings.GRAPHILE_WORKER_SCHEMA = "no_such_schema"
    response = viewer_api.get("/api/jobs")
    assert response.status_code == 503
    assert "no_such_schema" in response.json()["detail"]
