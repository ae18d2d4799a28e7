"""Filter, page and open a job in a real headless Chromium, with and without HTMX swaps."""

import re

import pytest

from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

pytestmark = pytest.mark.browser


@pytest.fixture
def login(worker_rows, django_user_model):
    utils = WorkerUtils()
    utils.add_raw_jobs(
        [RawJobSpec("send_email", {"n": i}, JobSpec(queue_name="emails")) for i in range(60)]
        + [RawJobSpec("charge_card", {"n": i}) for i in range(5)]
    )
    django_user_model.objects.create_user("oncall", password="oncall-password-1")
    return "oncall", "oncall-password-1"


def test_jobs_flow__filter_page_and_open_a_job(live_server, page, screenshot, login):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/jobs/")
    page.get_by_label("User name").fill(login[0])
    page.get_by_label("Password").fill(login[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()

    # Filter by task through the form (an HTMX swap that also updates the URL).
    page.get_by_label("Task").fill("send_email")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"task=send_email"))
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("table.jobs")).not_to_contain_text("charge_card")
    expect(page.get_by_role("link", name=re.compile("^All"))).to_contain_text("60")

    # Next page, then back.
    first_id = rows.first.get_by_role("link").inner_text()
    page.get_by_role("link", name="Next →").click()
    expect(rows).to_have_count(10)
    expect(page).to_have_url(re.compile(r"cursor="))
    page.get_by_role("link", name="← Previous").click()
    expect(rows).to_have_count(50)
    expect(rows.first.get_by_role("link")).to_have_text(first_id)
    screenshot("jobs-filtered")

    # Open a job from the list.
    rows.nth(3).get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Job \d+"))).to_be_visible()
    identity = page.locator("dl.facts").nth(1)
    expect(identity).to_contain_text("send_email")
    expect(identity).to_contain_text("emails")
    screenshot("job-detail-from-filter")
