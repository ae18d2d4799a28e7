"""One page per audit entry (issue 16 point 4): who, when, why, the filter, every id with what
happened to it, before -> after per column, undo from there, and links both ways."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from worker_admin import audit
from worker_admin.audit import AuditEntry
from worker_admin.models import Job

ACTIONS = "/jobs/actions/"


def _text(response) -> str:
    without_tags = re.sub(r"<[^>]+>", " ", response.content.decode())
    return html.unescape(re.sub(r"\s+", " ", without_tags))


def _token(response) -> str:
    match = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert match
    return match.group(1)


def _do(client, data: dict, url: str = ACTIONS):
    preview = client.post(url, data)
    return client.post(url, data | {"token": _token(preview)}, follow=True)


@pytest.fixture
def operator_client(login_as):
    return login_as("operator", "op")


def _url(entry: AuditEntry) -> str:
    return reverse("worker_admin:audit_entry", args=[entry.pk])


def test_entry_page__a_reschedule_shows_who_why_ids_and_before_after(operator_client, jobs):
    job = jobs.scheduled(priority=2)
    form = {"action": "reschedule", "ids": [job.id], "has_options": "1", "priority": "8"}
    _do(operator_client, form | {"reason": "move it up"})
    entry = AuditEntry.objects.get(action="reschedule")
    response = operator_client.get(_url(entry))
    assert response.status_code == 200
    text = _text(response)
    assert f"Audit entry {entry.pk}" in text and "op via console" in text
    assert "move it up" in text and "1 requested · 1 changed · 0 skipped · 0 gone" in text
    assert "priority : 2 → 8" in text
    body = response.content.decode()
    assert f'href="{reverse("worker_admin:job_detail", args=[job.id])}"' in body
    # Undo from here: the existing undo flow's URL, a POST that previews first.
    assert f'action="{reverse("worker_admin:undo", args=[entry.pk])}"' in body


def test_entry_page__undo_from_the_page_then_the_links_between_the_two(operator_client, jobs):
    job = jobs.failed()
    _do(operator_client, {"action": "retry", "ids": [job.id]})
    entry = AuditEntry.objects.get(action="retry")
    text = _text(operator_client.get(_url(entry)))
    assert "attempts : 25 → 0" in text and "run_at :" in text and "the action's time" in text
    _do(operator_client, {}, reverse("worker_admin:undo", args=[entry.pk]))
    undo = AuditEntry.objects.get(action="undo_retry")
    page = operator_client.get(_url(entry)).content.decode()
    assert reverse("worker_admin:audit_entry", args=[undo.pk]) in page  # "undone by"
    assert reverse("worker_admin:undo", args=[entry.pk]) not in page  # no second undo
    back = operator_client.get(_url(undo)).content.decode()
    assert reverse("worker_admin:audit_entry", args=[entry.pk]) in back  # "undoes"


def test_entry_page__skipped_and_missing_ids_with_their_reasons(operator_client, jobs):
    held = jobs.locked(by="graphile_worker_x1")
    entry = audit.record(
        actor="cli-user",
        via="cli",
        action="retry",
        outcome="done",
        filter={"task": "send_email", "state": "failed"},
        parameters={"changed_since_preview": [7001]},
        requested_ids=[held.id, 7001, 7002, 7003],
        changed_ids=[7003],
        skipped_ids=[held.id, 7001],
        missing_ids=[7002],
    )
    text = _text(operator_client.get(_url(entry)))
    assert f"{held.id} skipped a worker held it" in text
    assert "7001 skipped changed since the preview" in text
    assert "7002 missing gone: completed or deleted meanwhile" in text
    assert "7003 changed" in text
    assert "task = send_email" in text and "state = failed" in text


def test_entry_page__complete_shows_the_deleted_rows(operator_client, jobs):
    job = jobs.ready()
    _do(operator_client, {"action": "complete", "ids": [job.id], "reason": "dup"})
    entry = AuditEntry.objects.get(action="complete")
    assert not Job.objects.filter(id=job.id).exists()
    text = _text(operator_client.get(_url(entry)))
    assert "row deleted (the image keeps it)" in text and "Undo…" in text


def test_entry_page__bad_ids_are_404_pages(operator_client, db):
    for path in ("/audit/999999/", f"/audit/{2**63}/", f"/audit/{10**30}/", "/audit/abc/"):
        response = operator_client.get(path)
        assert response.status_code == 404, path
    assert "There is no audit entry 999999." in _text(operator_client.get("/audit/999999/"))


def test_entry_page__html_in_values_is_escaped(operator_client, db):
    hostile = "<script>alert(1)</script>"
    entry = audit.record(
        actor=hostile,
        via="cli",
        action="fail",
        outcome="done",
        reason=hostile,
        filter={"task": hostile},
        requested_ids=[1],
        changed_ids=[1],
        before_image=[
            {
                "id": 1,
                "task_identifier": hostile,
                "attempts": 1,
                "max_attempts": 3,
                "last_error": hostile,
            }
        ],
    )
    body = operator_client.get(_url(entry)).content.decode()
    assert hostile not in body and "&lt;script&gt;" in body


def test_entry_page__viewer_reads_but_gets_no_undo(login_as, jobs):
    job = jobs.failed()
    entry = audit.record(
        actor="x",
        via="cli",
        action="fail",
        outcome="done",
        changed_ids=[job.id],
        before_image=[audit.job_image(job)],
    )
    client = login_as("viewer", "vera")
    response = client.get(_url(entry))
    assert response.status_code == 200
    assert reverse("worker_admin:undo", args=[entry.pk]) not in response.content.decode()
    assert client.post(_url(entry)).status_code == 405  # the page is a read


def test_entry_page__without_a_role_is_403(client, django_user_model, db):
    entry = audit.record(actor="x", via="cli", action="fail", outcome="done")
    client.force_login(django_user_model.objects.create_user("norole", password="pw-12345678"))
    assert client.get(_url(entry)).status_code == 403


def test_audit_list__rows_link_to_their_entry(operator_client, db):
    entry = audit.record(actor="x", via="cli", action="fail", outcome="done")
    body = operator_client.get(reverse("worker_admin:audit")).content.decode()
    assert f'href="{_url(entry)}"' in body


def test_job_page__lists_the_entries_that_touched_it_newest_first(operator_client, jobs):
    job = jobs.scheduled()
    other = jobs.scheduled()
    entries = [
        audit.record(actor="x", via="cli", action=f"act{n}", outcome="done", requested_ids=[job.id])
        for n in range(12)
    ]
    audit.record(actor="x", via="cli", action="elsewhere", outcome="done", changed_ids=[other.id])
    body = operator_client.get(reverse("worker_admin:job_detail", args=[job.id])).content.decode()
    shown = re.findall(r'href="/audit/(\d+)/"', body)
    assert shown == [str(e.pk) for e in reversed(entries)][:10]  # bounded, newest first
    assert f"/audit/?job={job.id}" in body  # the rest in the audit log
    assert "elsewhere" not in body
