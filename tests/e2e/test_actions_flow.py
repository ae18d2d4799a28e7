"""An operator previews and applies a bulk reschedule and finds it in the audit log; a viewer
sees no action buttons and a forged POST from the viewer changes nothing."""

import re

import pytest
from django.contrib.auth.models import Group

from worker_admin.models import Job
from worker_admin.roles import ensure_groups
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

pytestmark = pytest.mark.browser


def _login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def fleet(worker_rows, django_user_model):
    ensure_groups()  # a transactional test before this one flushed the migration's groups
    WorkerUtils().add_raw_jobs(
        [RawJobSpec("sync_inventory", {"n": i}, JobSpec(priority=0)) for i in range(12)]
        + [RawJobSpec("send_email", {"n": i}) for i in range(4)]
    )
    for name, role in (("olivia", "operator"), ("victor", "viewer")):
        user = django_user_model.objects.create_user(name, password=f"{name}-password-1")
        user.groups.add(Group.objects.get(name=role))


def test_actions_flow__operator_bulk_reschedule_then_audit(live_server, page, screenshot, fleet):
    from playwright.sync_api import expect

    _login(page, live_server.url, "olivia", "olivia-password-1")
    page.goto(f"{live_server.url}/jobs/?task=sync_inventory")
    page.get_by_label("Act on").select_option("filter")
    page.get_by_label("Action").select_option("reschedule")
    page.get_by_role("button", name="Preview").click()

    expect(page.get_by_role("heading", name=re.compile("Reschedule"))).to_be_visible()
    page.get_by_label("Priority").fill("9")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".preview-count")).to_contain_text("12 jobs match the filter now")
    screenshot("action-preview")
    page.get_by_label(re.compile("Reason")).fill("drain inventory last")
    page.get_by_role("button", name="Reschedule: 12 jobs").click()

    expect(page.get_by_role("status").or_(page.locator(".messages"))).to_contain_text(
        "changed 12 of 12"
    )
    assert set(
        Job.objects.filter(task__identifier="sync_inventory").values_list("priority", flat=True)
    ) == {9}
    assert set(
        Job.objects.filter(task__identifier="send_email").values_list("priority", flat=True)
    ) == {0}

    page.get_by_role("link", name="Audit").click()
    row = page.locator("table.audit tbody tr").first
    expect(row).to_contain_text("reschedule")
    expect(row).to_contain_text("olivia")
    expect(row).to_contain_text("drain inventory last")
    expect(row).to_contain_text("changed 12 of 12")
    screenshot("audit")


def test_actions_flow__viewer_sees_no_buttons_and_cannot_forge(live_server, page, fleet):
    from playwright.sync_api import expect

    _login(page, live_server.url, "victor", "victor-password-1")
    page.goto(f"{live_server.url}/jobs/")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#bulk-form")).to_have_count(0)
    job_id = Job.objects.order_by("id").first().id
    page.goto(f"{live_server.url}/jobs/{job_id}/")
    expect(page.get_by_role("button", name="Complete…")).to_have_count(0)

    # A forged POST with the viewer's own session and CSRF token.
    token = page.context.cookies()
    csrf = next(c["value"] for c in token if c["name"] == "csrftoken")
    response = page.request.post(
        f"{live_server.url}/jobs/actions/",
        form={"action": "complete", "ids": str(job_id), "reason": "forged"},
        headers={"X-CSRFToken": csrf, "Referer": f"{live_server.url}/jobs/"},
    )
    assert response.status == 403
    assert Job.objects.filter(id=job_id).exists()
