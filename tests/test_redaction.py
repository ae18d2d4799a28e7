"""Redaction of payload fields by path: the function, the job page, the audited reveal, and
the audit export. The stored payload always stays whole."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from worker_admin.audit import AuditEntry
from worker_admin.redaction import REDACTED, parse_paths, redact

SECRET = "s3cr3t-4111-marker"
PAYLOAD = {
    "to": "a@example.org",
    "password": SECRET,
    "card": {"number": SECRET, "expiry": "12/30"},
    "headers": {"Authorization": f"Bearer {SECRET}", "Accept": "json"},
    "users": [{"name": "ann", "token": SECRET}, {"name": "bob", "token": SECRET}],
    "deep": {"a": {"b": {"token": SECRET}}},
}
PATHS = "password,card.number,*.token,headers.authorization,deep.**.token"


# -- the function -----------------------------------------------------------------------------


def test_redact__replaces_each_configured_field_and_names_its_path():
    shown, paths = redact(PAYLOAD, PATHS.split(","))
    assert SECRET not in json.dumps(shown)
    assert shown["password"] == REDACTED
    assert shown["card"] == {"number": REDACTED, "expiry": "12/30"}
    assert shown["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert shown["users"][1] == {"name": "bob", "token": REDACTED}
    assert shown["deep"]["a"]["b"]["token"] == REDACTED
    assert sorted(paths) == sorted(
        [
            "password",
            "card.number",
            "users.0.token",
            "users.1.token",
            "headers.Authorization",
            "deep.a.b.token",
        ]
    )


def test_redact__leaves_the_original_untouched():
    original = json.loads(json.dumps(PAYLOAD))
    redact(PAYLOAD, ["password", "**.token"])
    assert original == PAYLOAD


def test_redact__double_star_reaches_every_depth_including_the_top():
    shown, paths = redact({"token": 1, "x": [{"y": {"token": 2}}]}, ["**.token"])
    assert shown == {"token": REDACTED, "x": [{"y": {"token": REDACTED}}]}
    assert paths == ["token", "x.0.y.token"]


def test_redact__single_star_is_exactly_one_level():
    shown, paths = redact({"token": 1, "a": {"token": 2, "b": {"token": 3}}}, ["*.token"])
    assert shown == {"token": 1, "a": {"token": REDACTED, "b": {"token": 3}}}
    assert paths == ["a.token"]


@pytest.mark.parametrize("payload", [None, 42, "text", [], [1, 2], {"other": 1}])
def test_redact__payloads_without_the_fields_come_back_equal(payload):
    assert redact(payload, ["password", "*.token"]) == (payload, [])


def test_redact__nothing_configured_means_nothing_changes(settings):
    settings.REDACT_PAYLOAD_PATHS = []
    assert redact(PAYLOAD) == (PAYLOAD, [])


@pytest.mark.parametrize("bad", ["a..b", ".a", "a.", "card.*", "**"])
def test_parse_paths__malformed_path_is_one_sentence(bad):
    with pytest.raises(ValueError, match="is not a payload path"):
        parse_paths(bad)


def test_settings__malformed_redact_paths_stop_the_start(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "REDACT_PAYLOAD_PATHS": "password,card..number"}
    env["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    env.setdefault("SECRET_KEY", "x" * 60)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "REDACT_PAYLOAD_PATHS" in result.stderr
    assert "card..number" in result.stderr


# -- the job page and the reveal ---------------------------------------------------------------


@pytest.fixture
def redacting(settings):
    settings.REDACT_PAYLOAD_PATHS = PATHS.split(",")


@pytest.fixture
def secret_job(jobs):
    return jobs.add("send_email", PAYLOAD)


def test_job_detail__shows_redacted_payload_and_the_paths(redacting, login_as, secret_job):
    client = login_as("viewer", "vera")
    body = client.get(reverse("worker_admin:job_detail", args=[secret_job.id])).content.decode()
    assert SECRET not in body
    assert REDACTED in body
    assert "card.number" in body and "users.1.token" in body
    assert reverse("worker_admin:reveal_payload", args=[secret_job.id]) not in body  # viewer


def test_job_detail__without_redaction_shows_everything(login_as, secret_job, settings):
    settings.REDACT_PAYLOAD_PATHS = []
    body = login_as("viewer", "vera").get(reverse("worker_admin:job_detail", args=[secret_job.id]))
    assert SECRET in body.content.decode()
    assert "Reveal the whole payload" not in body.content.decode()


def test_reveal__operator_sees_the_whole_payload_once_and_it_is_audited(
    redacting, login_as, secret_job
):
    client = login_as("operator", "oscar")
    detail = reverse("worker_admin:job_detail", args=[secret_job.id])
    reveal = reverse("worker_admin:reveal_payload", args=[secret_job.id])
    assert reveal in client.get(detail).content.decode()

    response = client.post(reveal)
    assert response.status_code == 200
    assert SECRET in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    entry = AuditEntry.objects.get(action="reveal_payload")
    assert (entry.actor_name, entry.outcome, entry.requested_ids) == (
        "oscar",
        "done",
        [secret_job.id],
    )
    assert "card.number" in entry.parameters["redacted_paths"]
    assert SECRET not in json.dumps(entry.parameters)  # the audit names paths, not values

    assert SECRET not in client.get(detail).content.decode()  # once: the page hides it again


def test_reveal__viewer_is_refused_and_the_refusal_audited(redacting, login_as, secret_job):
    client = login_as("viewer", "vera")
    response = client.post(reverse("worker_admin:reveal_payload", args=[secret_job.id]))
    assert response.status_code == 403
    assert SECRET not in response.content.decode()
    entry = AuditEntry.objects.get(action="reveal_payload")
    assert (entry.actor_name, entry.outcome) == ("vera", "rejected")


def test_reveal__get_reveals_nothing(redacting, login_as, secret_job):
    client = login_as("operator", "oscar")
    response = client.get(reverse("worker_admin:reveal_payload", args=[secret_job.id]))
    assert response.status_code == 405
    assert SECRET not in response.content.decode()
    assert not AuditEntry.objects.filter(action="reveal_payload").exists()


def test_reveal__unknown_job_is_404_and_not_audited_as_done(redacting, login_as, db):
    client = login_as("operator", "oscar")
    response = client.post(reverse("worker_admin:reveal_payload", args=[987654321]))
    assert response.status_code == 404
    assert not AuditEntry.objects.filter(action="reveal_payload", outcome="done").exists()


# -- the audit log's export --------------------------------------------------------------------


def test_audit_export__an_added_payload_is_exported_redacted_and_stored_whole(
    redacting, login_as, jobs
):
    from worker_admin import audit

    audit.record(
        actor="someone",
        via="cli",
        action="add_job",
        outcome="done",
        parameters={"task": "send_email", "payload": PAYLOAD},
    )
    client = login_as("viewer", "vera")
    for kind in ("json", "csv"):
        response = client.get(reverse("worker_admin:audit"), {"format": kind})
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert SECRET not in body.decode(), kind
        assert REDACTED in body.decode(), kind
    assert AuditEntry.objects.get(action="add_job").parameters["payload"] == PAYLOAD


def test_audit_export__payload_kept_as_text_is_withheld_when_not_json(redacting, login_as, db):
    from worker_admin import audit

    audit.record(
        actor="someone",
        via="web",
        action="add_job",
        outcome="rejected",
        parameters={"payload": f'{{"password": "{SECRET}"'},  # clipped, not JSON
    )
    body = login_as("viewer", "vera").get(reverse("worker_admin:audit"), {"format": "json"})
    assert SECRET not in body.content.decode()
