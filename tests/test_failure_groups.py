"""The failures page's "retry this group" and "fail this group" (issue 16 point 6): each goes
through the job actions' own preview on the jobs list's filter for the group, which pins exactly
the group's jobs."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from worker_admin.audit import AuditEntry
from worker_admin.models import Job

Q = "graphile_worker._private_jobs"


def _text(response) -> str:
    without_tags = re.sub(r"<[^>]+>", " ", response.content.decode())
    return html.unescape(re.sub(r"\s+", " ", without_tags))


def _forms(response) -> dict[str, list[str]]:
    """action value -> the URLs its group buttons post to (each button names its formaction
    and submits the page's one group-action form, which holds the CSRF token and the scope)."""
    body = response.content.decode()
    found: dict[str, list[str]] = {}
    form = re.search(
        r'<form id="group-action" method="post" action="[^"]+" hidden>(.*?)</form>', body
    )
    buttons = re.findall(
        r'<button type="submit" form="group-action" formaction="([^"]+)"[^>]*'
        r'name="action" value="(\w+)"',
        body,
    )
    if buttons:
        assert form and "csrfmiddlewaretoken" in form.group(1), "the buttons' form is missing"
        assert 'name="scope" value="filter"' in form.group(1)
    for action_url, kind in buttons:
        if "/jobs/actions/" in action_url:
            found.setdefault(kind, []).append(html.unescape(action_url))
    return found


def _token(response) -> str:
    match = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert match, _text(response)[:2000]
    return match.group(1)


@pytest.fixture
def operator_client(login_as):
    return login_as("operator", "op")


@pytest.fixture
def storm(jobs):
    """One group (task send_email, "timeout after <n>s"): two failed, one retrying. Around it,
    jobs that share the task or the error but are not in the group."""
    group = [
        jobs.failed(error="timeout after 30s").id,
        jobs.failed(error="timeout after 45s").id,
        jobs.retrying(error="timeout after 12s").id,
    ]
    others = [
        jobs.failed(error="connection refused").id,  # same task, other error
        jobs.failed("resize_image", error="timeout after 30s").id,  # other task
    ]
    ready = jobs.ready()  # same task and error, but attempts 0: neither failed nor retrying
    jobs.sql(f"UPDATE {Q} SET last_error = 'timeout after 9s' WHERE id = %s", [ready.id])
    others.append(ready.id)
    return group, others


def _group_forms(client) -> dict[str, list[str]]:
    response = client.get(reverse("worker_admin:failures"), {"task": "send_email"})
    assert response.status_code == 200
    return _forms(response)


def test_retry_this_group__previews_and_changes_exactly_the_groups_jobs(
    operator_client, jobs, storm
):
    group, others = storm
    forms = _group_forms(operator_client)
    retry = next(url for url in forms["retry"] if "timeout" in url)
    preview = operator_client.post(retry, {"action": "retry", "scope": "filter"})
    assert preview.status_code == 200
    assert "3 jobs match the filter now" in _text(preview)
    # A job that joins the group after the preview is not touched: the preview pinned its jobs.
    late = jobs.failed(error="timeout after 99s").id
    before = {job.id: job.attempts for job in Job.objects.filter(id__in=[*others, late])}
    done = operator_client.post(
        retry, {"action": "retry", "scope": "filter", "token": _token(preview)}, follow=True
    )
    assert done.status_code == 200
    assert all(job.attempts == 0 for job in Job.objects.filter(id__in=group))
    assert {job.id: job.attempts for job in Job.objects.filter(id__in=[*others, late])} == before
    entry = AuditEntry.objects.get(action="retry", outcome="done")
    assert sorted(entry.changed_ids) == sorted(group)
    assert entry.filter["failing"] == "yes" and entry.filter["task"] == "send_email"


def test_fail_this_group__pins_its_retrying_jobs(operator_client, storm):
    group, _ = storm
    forms = _group_forms(operator_client)
    fail = next(url for url in forms["fail"] if "timeout" in url)
    preview = operator_client.post(fail, {"action": "fail", "scope": "filter"})
    assert "1 job matches the filter now" in _text(preview)
    assert str(group[2]) in _text(preview)


def test_group_actions__follow_the_pages_state_filter(operator_client, storm):
    failed_only = operator_client.get(
        reverse("worker_admin:failures"), {"task": "send_email", "state": "failed"}
    )
    forms = _forms(failed_only)
    assert "fail" not in forms  # failed jobs are failed already
    retry = next(url for url in forms["retry"] if "timeout" in url)
    assert "state=failed" in retry
    preview = operator_client.post(retry, {"action": "retry", "scope": "filter"})
    assert "2 jobs match the filter now" in _text(preview)


def test_group_actions__a_viewer_sees_none(login_as, storm):
    client = login_as("viewer", "vera")
    response = client.get(reverse("worker_admin:failures"))
    assert response.status_code == 200 and "timeout after" in _text(response)
    assert _forms(response) == {}
    assert "Retry this group" not in _text(response)


def test_group_actions__hostile_task_and_error_stay_inert(operator_client, jobs):
    hostile = '<img src=x onerror=alert(1)>"&'
    jobs.failed(hostile, error=f"boom {hostile}")
    response = operator_client.get(reverse("worker_admin:failures"))
    body = response.content.decode()
    assert "<img src=x" not in body
    retry = _forms(response)["retry"][0]
    preview = operator_client.post(retry, {"action": "retry", "scope": "filter"})
    assert "1 job matches the filter now" in _text(preview)


def test_jobs_list__the_failing_filter(operator_client, storm):
    group, _ = storm
    response = operator_client.get(
        reverse("worker_admin:jobs"), {"failing": "yes", "task": "send_email"}
    )
    shown = {job.id for job in response.context["page"].jobs}
    assert set(group) <= shown and "Showing failed and retrying jobs only." in _text(response)
    bad = operator_client.get(reverse("worker_admin:jobs"), {"failing": "<b>"})
    assert bad.status_code == 200 and "Ignored the failed or retrying filter" in _text(bad)


def test_api__the_failing_filter_lists_a_groups_jobs(client, django_user_model, storm):
    from tests.test_api import Api, user_with_token

    group, _ = storm
    api = Api(client, user_with_token(django_user_model, "viewer", "viewer1")[1])
    body = api.get("/api/jobs", failing="yes", task="send_email", error="timeout after <n>s").json()
    assert sorted(j["id"] for j in body["jobs"]) == sorted(group)
    assert api.get("/api/jobs", failing="no").status_code in (400, 422)
