"""No secret and no payload in the logs at INFO: an add with a marked payload, a malformed one,
failed and successful logins, a lockout, a job page and a reveal, all through real requests,
with every logger captured at INFO."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from tests.test_add_jobs import _hidden

MARKER = "payload-marker-7f3a9c"
PASSWORD = "password-marker-5e1d42"
WRONG = "wrong-password-marker-b8c0"


@pytest.fixture
def operator_client(client, django_user_model):
    user = django_user_model.objects.create_user("opal", password=PASSWORD)
    user.groups.add(Group.objects.get(name="operator"))
    return client


def test_logs__no_payload_and_no_password_at_info(operator_client, caplog, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.REDACT_PAYLOAD_PATHS = ["api_key"]
    caplog.set_level(logging.INFO)
    client = operator_client
    login = reverse("login")

    # Failed logins up to a lockout, then the lockout lifted and a real login.
    for _ in range(3):
        client.post(login, {"username": "opal", "password": WRONG})
    from django.core.management import call_command

    call_command("axes_reset")
    assert client.post(login, {"username": "opal", "password": PASSWORD}).status_code == 302

    # An add with a secret in its payload, previewed then confirmed; and a malformed one.
    add = reverse("worker_admin:add_job")
    data = {"identifier": "send_email", "payload": f'{{"api_key": "{MARKER}", "n": 1}}'}
    preview = client.post(add, data)
    confirm = client.post(add, {**_hidden(preview), "confirm": "1"})
    assert confirm.status_code == 302
    bad = client.post(add, {"identifier": "send_email", "payload": f'{{"api_key": "{MARKER}"'})
    assert bad.status_code in (200, 400)

    # The job's page (redacted) and a reveal (audited), then a 404 and a search for the value.
    from worker_admin.models import Job

    job = Job.objects.get()
    client.get(reverse("worker_admin:job_detail", args=[job.id]))
    assert (
        MARKER
        in client.post(reverse("worker_admin:reveal_payload", args=[job.id])).content.decode()
    )
    client.get(reverse("worker_admin:job_detail", args=[job.id + 1000]))
    client.get(reverse("worker_admin:jobs"), {"q": MARKER})

    assert any(record.name.startswith("axes") for record in caplog.records), "logs captured"
    assert any(record.levelno >= logging.WARNING for record in caplog.records)
    text = caplog.text + " ".join(str(record.args) for record in caplog.records)
    for secret in (MARKER, PASSWORD, WRONG):
        assert secret not in text, secret
