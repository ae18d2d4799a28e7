"""A tour of every main page on demo data, at 1280 px and at 390 px: each page is screenshot
to artifacts/screenshots/ (UPDATE_DOCS_SCREENSHOTS=1 also refreshes the README's images in
docs/), and no page is wider than the window."""

import re

import pytest

from tests.e2e.conftest import NARROW, WIDE, horizontal_overflow, log_in, new_page, save_screenshot
from worker_admin.demo.seed import seed_demo
from worker_admin.models import Job
from worker_admin.utils import WorkerUtils

pytestmark = pytest.mark.browser

PAGES = [
    ("overview", "/"),
    ("jobs", "/jobs/"),
    ("jobs-failed", "/jobs/?state=failed"),
    ("failures", "/failures/"),
    ("queues", "/queues/"),
    ("tasks", "/tasks/"),
    ("workers", "/workers/"),
    ("maintenance", "/maintenance/"),
    ("add-job", "/jobs/add/"),
    ("add-batch", "/jobs/add/batch/"),
]
IN_DOCS = {"overview", "jobs", "job-detail", "action-preview", "workers", "sweep"}


@pytest.fixture
def demo(console_user):
    seed_demo(WorkerUtils(), jobs=600)
    return console_user("demo", "admin")


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280px", "390px"])
def test_tour__every_main_page(live_server, browser, demo, viewport):
    from playwright.sync_api import expect

    page = new_page(browser, viewport=viewport)
    base = live_server.url
    suffix = "" if viewport is WIDE else "-390"
    overflowing = {}

    def shoot(name: str) -> None:
        if (extra := horizontal_overflow(page)) > 0:
            overflowing[name] = extra
        save_screenshot(page, name + suffix, docs=viewport is WIDE and name in IN_DOCS)

    page.goto(f"{base}/login/")
    shoot("login")
    log_in(page, base, demo)
    for name, path in PAGES:
        page.goto(base + path)
        expect(page.locator("h1").first).to_be_visible()
        shoot(name)

    # A failed job's detail: the error, the attempts, the payload.
    failed = Job.objects.filter(last_error__isnull=False).order_by("-id").first()
    page.goto(f"{base}/jobs/{failed.id}/")
    expect(page.get_by_role("heading", name=re.compile(f"^Job {failed.id}"))).to_be_visible()
    shoot("job-detail")

    # A bulk retry of every failed job, previewed.
    page.goto(f"{base}/jobs/?state=failed")
    page.get_by_label("Act on").select_option("filter")
    page.get_by_label("Action").select_option("retry")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".preview-count")).to_be_visible()
    shoot("action-preview")

    # The stale-worker sweep's dry run.
    page.goto(f"{base}/maintenance/")
    page.get_by_role("button", name="Dry run…").click()
    expect(page.get_by_role("heading", name=re.compile("dry run"))).to_be_visible()
    shoot("sweep")

    page.goto(f"{base}/audit/")
    shoot("audit")
    assert overflowing == {}, f"wider than the {viewport['width']} px window: {overflowing}"
    page.context.close()
