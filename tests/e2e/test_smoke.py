"""Log in, read the overview, open Jobs, open one job: in a real headless Chromium."""

import re

import pytest

from worker_admin.demo.seed import seed_demo
from worker_admin.utils import WorkerUtils

pytestmark = pytest.mark.browser


@pytest.fixture
def demo_login(worker_rows, django_user_model):
    WorkerUtils().migrate(recovery=True)
    seed_demo(WorkerUtils(), jobs=300)
    django_user_model.objects.create_user("demo", password="demo-password-123")
    return "demo", "demo-password-123"


def test_smoke__login_overview_jobs_detail(live_server, page, screenshot, demo_login):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_label("User name").fill(demo_login[0])
    page.get_by_label("Password").fill(demo_login[1])
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".state-card.state-ready .state-count")).not_to_have_text("0")
    screenshot("overview")

    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    first = page.locator("table.jobs tbody tr").first.get_by_role("link")
    job_id = first.inner_text()
    screenshot("jobs")
    first.click()
    expect(page.get_by_role("heading", name=re.compile(f"Job {job_id}"))).to_be_visible()
    expect(page.locator("#payload")).to_contain_text("request_id")
    screenshot("job-detail")
