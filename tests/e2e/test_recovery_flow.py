"""An admin runs a stale-worker sweep as a dry run, then for real, and finds it audited."""

import re

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from worker_admin.models import Job, Worker
from worker_admin.roles import ensure_groups
from worker_admin.utils import JobSpec, WorkerUtils

pytestmark = pytest.mark.browser


@pytest.fixture
def crashed_worker(worker_rows, django_user_model):
    ensure_groups()  # an earlier transactional test flushed the migration's groups
    job = WorkerUtils().add_raw_job("resize_image", {"image": 7})
    with connection.cursor() as cursor:
        cursor.execute("SELECT graphile_worker.worker_heartbeat('graphile_worker_crashed')")
        cursor.execute(
            "UPDATE graphile_worker._private_workers SET last_heartbeat_at = now() - "
            "interval '12 minutes' WHERE id = 'graphile_worker_crashed'"
        )
        cursor.execute(
            "UPDATE graphile_worker._private_jobs SET locked_by = 'graphile_worker_crashed', "
            "locked_at = now() - interval '11 minutes', attempts = 1 WHERE id = %s",
            [job.id],
        )
    admin = django_user_model.objects.create_user("ada", password="ada-password-1")
    admin.groups.add(Group.objects.get(name="admin"))
    return job


def test_recovery_flow__dry_run_then_sweep_then_audit(
    live_server, page, screenshot, crashed_worker
):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/login/")
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password").fill("ada-password-1")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Maintenance").click()
    page.get_by_role("button", name="Dry run…").click()

    expect(page.get_by_role("heading", name="Sweep stale workers: dry run")).to_be_visible()
    expect(page.locator(".preview")).to_contain_text("will release 1 job of 1 dead worker")
    expect(page.locator(".preview")).to_contain_text("attempts 1 → 0")
    expect(page.locator(".preview")).to_contain_text("graphile_worker_crashed")
    screenshot("sweep-dry-run")
    assert Job.objects.get(id=crashed_worker.id).locked_by == "graphile_worker_crashed"

    page.get_by_label(re.compile("Reason")).fill("the host was lost")
    page.get_by_role("button", name="Sweep: release 1 job of 1 dead worker").click()
    expect(page.locator(".messages")).to_contain_text("changed 1 of 1 job of 1 dead worker")
    job = Job.objects.get(id=crashed_worker.id)
    assert (job.locked_by, job.attempts) == (None, 0)
    assert not Worker.objects.filter(id="graphile_worker_crashed").exists()

    page.get_by_role("link", name="Audit").click()
    row = page.locator("table.audit tbody tr").first
    expect(row).to_contain_text("sweep")
    expect(row).to_contain_text("changed 1 of 1 job of 1 dead worker (1 recovered)")
    screenshot("audit-after-sweep")


@pytest.fixture
def superseded_job(worker_rows, django_user_model):
    """A dead worker's keyed job whose key add_job gave to a new job while it was dead."""
    ensure_groups()
    utils = WorkerUtils()
    old = utils.add_raw_job("nightly_report", {"v": 1}, JobSpec(job_key="nightly"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT graphile_worker.worker_heartbeat('graphile_worker_gone')")
        cursor.execute(
            "UPDATE graphile_worker._private_workers SET last_heartbeat_at = now() - "
            "interval '20 minutes' WHERE id = 'graphile_worker_gone'"
        )
        cursor.execute(
            "UPDATE graphile_worker._private_jobs SET locked_by = 'graphile_worker_gone', "
            "locked_at = now() - interval '25 minutes', attempts = 1 WHERE id = %s",
            [old.id],
        )
    new = utils.add_raw_job("nightly_report", {"v": 2}, JobSpec(job_key="nightly"))
    admin = django_user_model.objects.create_user("ada", password="ada-password-1")
    admin.groups.add(Group.objects.get(name="admin"))
    return old, new


def test_recovery_flow__dry_run_names_the_replacement_after_it_is_shown(
    live_server, page, screenshot, superseded_job
):
    """The replacement lookup (no index serves it) runs after the dry run's page is shown and
    fills the superseded row's cell in place."""
    from playwright.sync_api import expect

    old, new = superseded_job
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password").fill("ada-password-1")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/maintenance/")
    page.get_by_role("button", name="Dry run…").click()

    row = page.locator(".preview tbody tr", has_text=str(old.id))
    expect(row).to_contain_text(f"stays failed: superseded by job {new.id}")
    expect(row.get_by_role("link", name=f"job {new.id}")).to_have_attribute(
        "href", f"/jobs/{new.id}/"
    )
    expect(page.locator("#replacement-lookup")).to_contain_text(
        "Replacements found for 1 of 1 superseded job shown"
    )
    screenshot("sweep-dry-run-replacement")
