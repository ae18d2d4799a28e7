"""An audit entry's page and a worker's page in the browser (issue 16 points 4 and 5): long
values, a 390 px phone that never scrolls sideways, axe in both themes, and the screenshots in
docs/ (audit-entry.png, worker.png) with UPDATE_DOCS_SCREENSHOTS=1."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.db import connection

from tests.e2e.conftest import (
    NARROW,
    WIDE,
    axe_violations,
    describe_violations,
    horizontal_overflow,
    log_in,
    new_page,
    save_screenshot,
)
from worker_admin import audit
from worker_admin.models import Job
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

pytestmark = pytest.mark.browser

WORKER = "graphile_worker_4f9c2a7e1b3d"
LONG_ERROR = (
    "SMTPRecipientsRefused: {'customer-with-a-very-long-address-4821@mail.example.org': "
    "(550, b'5.1.1 mailbox unavailable; the remote server said the address does not exist "
    "and gave up after three attempts')}"
)


@pytest.fixture
def scene(console_user):
    """A registered worker holding jobs (one past the 4-hour mark) and a queue, an orphan lock
    holder with a long id, and a bulk retry's audit entry with before-images."""
    utils = WorkerUtils()
    added = utils.add_raw_jobs(
        [RawJobSpec("send_email", {"n": i}, JobSpec(queue_name="emails")) for i in range(6)]
        + [RawJobSpec("charge_card", {"n": i}) for i in range(3)]
    )
    ids = [job.id for job in added]
    q = "graphile_worker"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {q}.worker_heartbeat(%s, json_build_object('pid', 4242, 'hostname', "
            "'web-7.internal'))",
            [WORKER],
        )
        cursor.execute(
            f"UPDATE {q}._private_workers SET last_heartbeat_at = now() - interval '11 minutes', "
            "started_at = now() - interval '6 hours'"
        )
        for n, job_id in enumerate(ids[:3]):
            cursor.execute(
                f"UPDATE {q}._private_jobs SET locked_by = %s, attempts = 1, "
                f"locked_at = now() - interval '{[17, 42, 290][n]} minutes' WHERE id = %s",
                [WORKER, job_id],
            )
        cursor.execute(
            f"UPDATE {q}._private_job_queues SET locked_by = %s, "
            "locked_at = now() - interval '42 minutes' WHERE queue_name = 'emails'",
            [WORKER],
        )
        cursor.execute(
            f"UPDATE {q}._private_jobs SET attempts = max_attempts, last_error = %s "
            "WHERE id = ANY(%s)",
            [LONG_ERROR, ids[3:]],
        )
    failed = list(
        Job.objects.select_related("task", "job_queue").filter(id__in=ids[3:]).order_by("id")
    )
    entry = audit.record(
        actor="olivia",
        via="web",
        action="retry",
        outcome="done",
        summary="changed 5 of 6; 1 skipped: 1 changed since the preview",
        reason="SMTP relay fixed at 09:10 (INC-4821); retrying the bounced digest e-mails",
        filter={"task": "send_email", "error": "SMTPRecipientsRefused: {'…': (<n>, '…')}"},
        parameters={"action": "retry", "changed_since_preview": [ids[8]]},
        requested_ids=[job.id for job in failed],
        changed_ids=[job.id for job in failed if job.id != ids[8]][:5],
        skipped_ids=[ids[8]],
        before_image=[audit.job_image(job) for job in failed if job.id != ids[8]],
    )
    return console_user("ada", "admin"), entry


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_entity_pages__screenshots_narrow_window_and_axe(
    live_server, browser, axe_script, scene, scheme
):
    credentials, entry = scene
    problems = {}
    for viewport, suffix in ((WIDE, ""), (NARROW, "-phone")):
        page = new_page(browser, viewport=viewport, color_scheme=scheme, bypass_csp=True)
        log_in(page, live_server.url, credentials)
        for name, path in (
            ("audit-entry", f"/audit/{entry.pk}/"),
            ("worker", f"/workers/{quote(WORKER)}/"),
        ):
            page.goto(live_server.url + path)
            page.wait_for_selector("h1")
            assert "Not found" not in page.title()
            assert horizontal_overflow(page) == 0, (name, viewport)
            problems[f"{name}{suffix}"] = axe_violations(page, axe_script)
            shot = f"{name}{suffix}" + ("-dark" if scheme == "dark" else "")
            save_screenshot(page, shot, docs=scheme == "light" and not suffix)
        page.context.close()
    found = {path: v for path, v in problems.items() if v}
    assert not found, "\n".join(f"{path}:\n{describe_violations(v)}" for path, v in found.items())


def test_entity_pages__links_both_ways(live_server, browser, scene):
    credentials, entry = scene
    page = new_page(browser)
    log_in(page, live_server.url, credentials)
    page.goto(f"{live_server.url}/audit/")
    page.get_by_role("link", name=f"Entry {entry.pk},").click()
    page.wait_for_url(f"**/audit/{entry.pk}/")
    job_id = entry.changed_ids[0]
    page.get_by_role("link", name=str(job_id), exact=True).first.click()
    page.wait_for_url(f"**/jobs/{job_id}/")
    page.get_by_role("link", name="retry").first.click()  # the job page's audit entries
    page.wait_for_url(f"**/audit/{entry.pk}/")
    page.goto(f"{live_server.url}/workers/")
    page.get_by_role("link", name=WORKER).first.click()
    page.wait_for_url(f"**/workers/{WORKER}/**")
    assert page.get_by_role("button", name="Force-unlock this worker…").is_visible()
    page.get_by_role("button", name="Force-unlock this worker…").click()
    page.wait_for_selector("h1")
    assert WORKER in page.content()  # the existing preview, for this worker
    page.context.close()
