"""Cleanup through worker_admin/operations/cleanup.py (issue 14, point 6 for cleanup): the
preview shows the rows it will delete and needs a reason; the apply deletes only the pinned jobs
that are still as previewed, once, whichever face sends the confirmation."""

from __future__ import annotations

import html
import re
from collections import Counter

import pytest
from django.db import connections
from django.test import Client

from tests.test_api import Api, user_with_token
from tests.test_operations_guarantees import THREADS, _all_at_once, _same_session
from worker_admin.audit import AuditEntry
from worker_admin.installer import quote_schema
from worker_admin.models import Job
from worker_admin.operations import cleanup
from worker_admin.operations.claims import Confirmation
from worker_admin.operations.errors import Refused
from worker_admin.roles import ensure_groups
from worker_admin.utils import RescheduleJobOptions, WorkerUtils

URL = "/maintenance/cleanup/"
API_PREVIEW, API_APPLY = "/api/maintenance/cleanup/preview", "/api/maintenance/cleanup/apply"
DELETE = ["delete-permanently-failed-jobs"]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def admin_client(login_as):
    return login_as("admin", "ada")


@pytest.fixture
def admin_api(client, django_user_model):
    return Api(client, user_with_token(django_user_model, "admin", "admin1")[1])


def _text(response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))


def _token(response) -> str:
    match = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(1)


def test_cleanup_preview__shows_the_rows_in_the_future_tense(admin_client, jobs):
    failed = [jobs.failed("resize", error="disk full\ntrace"), jobs.failed("send_email")]
    jobs.ready("resize")
    shown = cleanup.preview("alice", DELETE, (), "old failures")
    assert shown.job_ids == [job.id for job in failed]
    first = shown.rows[0]
    assert (first.id, first.task, first.last_error) == (failed[0].id, "resize", "disk full")
    assert (first.attempts, first.max_attempts) == (25, 25)
    assert ISO_UTC.match(first.updated_at)
    assert dict(shown.counts_by_task) == {"resize": 1, "send_email": 1}
    assert shown.sentences == ["will delete 2 permanently failed jobs"]

    page = _text(admin_client.post(URL, {"tasks": DELETE, "reason": "old failures"}))
    assert "will delete 2 permanently failed jobs" in page
    assert "disk full" in page and "25/25" in page and str(failed[1].id) in page
    assert not re.search(r"\bdeleted\b", page)  # the future tense, never the past


def test_cleanup_preview__deleting_jobs_needs_a_reason(admin_client, admin_api, jobs):
    job = jobs.failed()
    with pytest.raises(Refused, match="Give a reason to delete permanently failed jobs"):
        cleanup.preview("alice", DELETE, (), "  ")
    page = admin_client.post(URL, {"tasks": DELETE})
    assert page.status_code == 400 and "Give a reason" in _text(page)
    api = admin_api.post(API_PREVIEW, {"tasks": []})
    assert api.status_code == 400 and "Give a reason" in api.json()["detail"]
    assert not Confirmation.objects.exists()
    assert Job.objects.filter(id=job.id).exists()
    # Removing unused queues deletes no job: no reason needed.
    assert cleanup.preview("alice", ["gc-job-queues"]).sentences == ["will delete 0 unused queues"]


def test_cleanup_apply__a_job_that_failed_after_the_preview_is_untouched_and_reported(
    admin_client, jobs
):
    before = jobs.failed("resize")
    preview = admin_client.post(URL, {"tasks": DELETE, "reason": "old"})
    later = jobs.failed("resize")
    done = admin_client.post(URL, {"token": _token(preview)}, follow=True)
    assert list(Job.objects.values_list("id", flat=True)) == [later.id]
    summary = "deleted 1 of 1 permanently failed job; 1 that failed after the preview left alone"
    assert summary in _text(done)
    entry = AuditEntry.objects.get(action="cleanup", outcome="done")
    assert entry.changed_ids == [before.id] and entry.requested_ids == [before.id]
    assert entry.reason == "old" and entry.summary == summary


def test_cleanup_apply__a_pinned_job_retried_in_between_is_skipped(admin_api, jobs):
    retried, stays = jobs.failed("resize"), jobs.failed("resize")
    body = {"tasks": DELETE, "reason": "old"}
    shown = admin_api.post(API_PREVIEW, body).json()
    assert [row["id"] for row in shown["rows"]] == [retried.id, stays.id]
    assert shown["counts_by_task"] == {"resize": 2}
    assert ISO_UTC.match(shown["rows"][0]["updated_at"])
    token = shown["fingerprint"]
    # An operator retried it in between (attempts back to 0): it is wanted again.
    WorkerUtils().reschedule_jobs([retried.id], RescheduleJobOptions(attempts=0))
    applied = admin_api.post(API_APPLY, body | {"fingerprint": token}).json()
    assert applied["deleted_job_ids"] == [stays.id]
    assert applied["changed_since_preview"] == [retried.id]
    assert applied["summary"] == (
        "deleted 1 of 2 permanently failed jobs; 1 changed since the preview"
    )
    assert list(Job.objects.values_list("id", flat=True)) == [retried.id]
    entry = AuditEntry.objects.get(action="cleanup", outcome="done")
    assert entry.skipped_ids == [retried.id]


@pytest.fixture
def admin_twins(worker_rows, django_user_model):
    """One admin with a page session and an API token; committed failed jobs and a bystander."""
    ensure_groups()
    user, secret = user_with_token(django_user_model, "admin", "cleaner")
    page = Client()
    page.force_login(user)
    utils = WorkerUtils()
    failed = [utils.add_raw_job("race_failed", {"n": n}).id for n in range(4)]
    with connections[utils.alias].cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote_schema(utils.schema)}._private_jobs SET attempts = max_attempts "
            "WHERE id = ANY(%s)",
            [failed],
        )
    bystander = utils.add_raw_job("race_other", {}).id
    return page, secret, failed, bystander


def test_cleanup_apply__one_confirmation_from_page_and_api_together_deletes_once(admin_twins):
    page, secret, failed, bystander = admin_twins
    body = {"tasks": DELETE, "reason": "race"}
    token = _token(page.post(URL, body))
    calls = iter(range(THREADS))

    def send():
        if next(calls) % 2:
            return _same_session(page).post(URL, {"token": token})
        return Api(Client(), secret).post(API_APPLY, body | {"fingerprint": token})

    replies = _all_at_once(send)

    statuses = Counter(r.status_code for r in replies)
    assert statuses[302] + statuses[200] == 1, statuses
    assert statuses[400] + statuses[409] == THREADS - 1, statuses
    done = list(AuditEntry.objects.filter(action="cleanup", outcome="done"))
    assert len(done) == 1 and sorted(done[0].changed_ids) == sorted(failed)
    for reply in replies:
        if reply.status_code in (400, 409):
            assert "already used" in _text(reply)
    assert list(Job.objects.values_list("id", flat=True)) == [bystander]


def test_cleanup_apply__one_api_fingerprint_applied_by_many_requests_deletes_once(admin_twins):
    _page, secret, failed, bystander = admin_twins
    body = {"tasks": DELETE, "reason": "race"}
    preview = Api(Client(), secret).post(API_PREVIEW, body)
    assert preview.status_code == 200, preview.content
    apply = body | {"fingerprint": preview.json()["fingerprint"]}

    replies = _all_at_once(lambda: Api(Client(), secret).post(API_APPLY, apply))

    assert Counter(r.status_code for r in replies) == Counter({200: 1, 409: THREADS - 1})
    done = list(AuditEntry.objects.filter(action="cleanup", outcome="done"))
    assert len(done) == 1 and sorted(done[0].changed_ids) == sorted(failed)
    for reply in replies:
        if reply.status_code == 409:
            assert reply.json()["audit_entry_id"] == done[0].pk
    assert list(Job.objects.values_list("id", flat=True)) == [bystander]
