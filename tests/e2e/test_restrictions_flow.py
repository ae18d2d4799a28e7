"""What a viewer and a read-only console cannot do: no buttons for it, and a forged POST
(with a real session and CSRF token) gets 403 and changes nothing."""

import pytest
from django.db import connection

from tests.e2e.conftest import log_in, save_screenshot
from worker_admin.models import Job
from worker_admin.utils import WorkerUtils

pytestmark = pytest.mark.browser

FORGED = [
    ("/jobs/actions/", lambda job: {"action": "complete", "ids": str(job), "reason": "x"}),
    ("/jobs/add/", lambda job: {"identifier": "forged", "payload": "{}"}),
    ("/jobs/add/batch/", lambda job: {"items": '[{"identifier": "forged"}]'}),
    ("/maintenance/sweep/", lambda job: {"threshold_minutes": "5", "delay_seconds": "0"}),
    ("/maintenance/force-unlock/", lambda job: {"worker_ids": "graphile_worker_busy"}),
    ("/maintenance/cleanup/", lambda job: {"tasks": "gc-job-queues"}),
    ("/maintenance/add-recovery/", lambda job: {}),
]


@pytest.fixture
def busy_queue(console_user):
    utils = WorkerUtils()
    job = utils.add_raw_job("send_email", {"to": "a@example.org"})
    utils.add_raw_job("send_email", {"to": "b@example.org"})
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE graphile_worker._private_jobs SET locked_by = 'graphile_worker_busy', "
            "locked_at = now() - interval '2 hours' WHERE id = %s",
            [job.id],
        )
    return job.id


def _jobs_snapshot() -> list[tuple]:
    return list(Job.objects.order_by("id").values_list("id", "locked_by", "attempts", "run_at"))


def _forge_everything(page, base: str, job_id: int) -> None:
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    for path, form in FORGED:
        response = page.request.post(
            base + path,
            form=form(job_id),
            headers={"X-CSRFToken": csrf, "Referer": base + "/"},
        )
        assert response.status == 403, (path, response.status)


def _no_write_controls(page, base: str, job_id: int) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base}/jobs/")
    expect(page.locator("#bulk-form")).to_have_count(0)
    expect(page.get_by_role("link", name="Add job")).to_have_count(0)
    page.goto(f"{base}/jobs/{job_id}/")
    expect(page.locator("form[action$='/jobs/actions/'] button")).to_have_count(0)
    page.goto(f"{base}/workers/")
    expect(page.get_by_role("button", name="Force-unlock…")).to_have_count(0)
    page.goto(f"{base}/maintenance/")
    expect(page.get_by_role("button", name="Dry run…")).to_have_count(0)
    expect(page.get_by_role("button", name="Preview…")).to_have_count(0)


def test_restrictions_flow__viewer_reads_everything_and_changes_nothing(
    live_server, page, busy_queue, console_user
):
    from playwright.sync_api import expect

    log_in(page, live_server.url, console_user("victor", "viewer"))
    before = _jobs_snapshot()
    _no_write_controls(page, live_server.url, busy_queue)
    page.goto(f"{live_server.url}/jobs/add/")
    expect(page.locator("main")).to_contain_text("needs the operator role")
    _forge_everything(page, live_server.url, busy_queue)
    assert _jobs_snapshot() == before


def test_restrictions_flow__read_only_mode_even_for_an_admin(
    live_server, page, busy_queue, console_user, settings
):
    from playwright.sync_api import expect

    settings.READ_ONLY = True
    log_in(page, live_server.url, console_user("ada", "admin"))
    before = _jobs_snapshot()
    expect(page.get_by_role("status").filter(has_text="Read-only mode")).to_be_visible()
    _no_write_controls(page, live_server.url, busy_queue)
    save_screenshot(page, "read-only-maintenance")
    page.goto(f"{live_server.url}/jobs/add/")
    expect(page.locator("main")).to_contain_text("read-only")
    _forge_everything(page, live_server.url, busy_queue)
    assert _jobs_snapshot() == before
