"""An admin force-unlocks a dead worker's jobs from the workers page and cleans up permanently
failed jobs from the maintenance page: each previewed first, then done, then audited."""

import re

import pytest
from django.db import connection

from tests.e2e.conftest import log_in, save_screenshot
from worker_admin.audit import AuditEntry
from worker_admin.models import Job
from worker_admin.utils import JobSpec, WorkerUtils

pytestmark = pytest.mark.browser


def _sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, list(params))


@pytest.fixture
def dead_worker(console_user):
    utils = WorkerUtils()
    held = [utils.add_raw_job("transcode", {"n": n}, JobSpec(queue_name="video")) for n in (1, 2)]
    other = utils.add_raw_job("transcode", {"n": 3})
    _sql("SELECT graphile_worker.worker_heartbeat('graphile_worker_dead')")
    _sql(
        "UPDATE graphile_worker._private_workers SET last_heartbeat_at = now() - "
        "interval '40 minutes' WHERE id = 'graphile_worker_dead'"
    )
    _sql(
        "UPDATE graphile_worker._private_jobs SET locked_by = 'graphile_worker_dead', "
        "locked_at = now() - interval '41 minutes', attempts = 1 WHERE id = ANY(%s)",
        [[j.id for j in held]],
    )
    _sql(
        "UPDATE graphile_worker._private_jobs SET locked_by = 'graphile_worker_alive', "
        "locked_at = now() WHERE id = %s",
        [other.id],
    )
    return [j.id for j in held], other.id, console_user("ada", "admin")


def test_maintenance_flow__force_unlock_a_dead_worker(live_server, page, dead_worker):
    from playwright.sync_api import expect

    held, other, admin = dead_worker
    log_in(page, live_server.url, admin)
    page.get_by_role("link", name="Workers").click()
    row = page.locator("tr", has_text="graphile_worker_dead").last
    save_screenshot(page, "workers")
    row.get_by_role("button", name="Force-unlock…").click()

    expect(page.get_by_role("heading", name=re.compile("Force-unlock"))).to_be_visible()
    expect(page.locator("main")).to_contain_text("graphile_worker_dead")
    save_screenshot(page, "force-unlock-preview")
    assert Job.objects.filter(id__in=held, locked_by="graphile_worker_dead").count() == 2
    page.get_by_label(re.compile("^Reason")).fill("host terminated by the cloud provider")
    button = page.get_by_role("button", name=re.compile("^Force-unlock: release 2 jobs"))
    expect(button).to_have_text("Force-unlock: release 2 jobs and 0 queues held by 1 worker id")
    button.click()

    expect(page.locator(".messages")).to_contain_text("Force-unlock")
    assert not Job.objects.filter(id__in=held, locked_by__isnull=False).exists()
    assert Job.objects.get(id=other).locked_by == "graphile_worker_alive"  # not asked: kept
    entry = AuditEntry.objects.get(action="force_unlock", outcome="done")
    assert sorted(entry.changed_ids) == sorted(held)
    assert entry.reason == "host terminated by the cloud provider"


@pytest.fixture
def failed_jobs(console_user):
    utils = WorkerUtils()
    failed = [
        utils.add_raw_job("import_feed", {"n": n}, JobSpec(queue_name="feeds")) for n in (1, 2, 3)
    ]
    _sql(
        "UPDATE graphile_worker._private_jobs SET attempts = max_attempts, last_error = 'gone' "
        "WHERE id = ANY(%s)",
        [[j.id for j in failed]],
    )
    keep = utils.add_raw_job("import_feed", {"n": 4})
    return [j.id for j in failed], keep.id, console_user("ada", "admin")


def test_maintenance_flow__cleanup_permanently_failed_jobs(live_server, page, failed_jobs):
    from playwright.sync_api import expect

    failed, keep, admin = failed_jobs
    log_in(page, live_server.url, admin)
    page.get_by_role("link", name="Maintenance").click()
    form = page.locator("form[action$='cleanup/']")
    form.get_by_label("Reason").fill("old imports")
    form.get_by_role("button", name="Preview…").click()

    expect(page.get_by_role("heading", name=re.compile("Clean up"))).to_be_visible()
    expect(page.locator("main")).to_contain_text("will delete 3 permanently failed jobs")
    expect(page.locator("main table")).to_contain_text(str(failed[0]))
    save_screenshot(page, "cleanup-preview")
    assert Job.objects.filter(id__in=failed).count() == 3
    page.get_by_role("button", name=re.compile("^Clean up: will delete 3")).click()

    expect(page.locator(".messages")).to_contain_text("Cleanup")
    assert not Job.objects.filter(id__in=failed).exists()
    assert Job.objects.filter(id=keep).exists()
    assert AuditEntry.objects.filter(action="cleanup", outcome="done").count() == 1
