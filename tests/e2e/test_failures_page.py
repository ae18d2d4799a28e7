"""The failures page in a real browser (#15): long errors arrive as an excerpt with a link to
the job, the group buttons (which submit the page's one form, outside the polled part) still
open the preview after a refresh swapped the table, and the page passes axe and fits a phone."""

import re

import pytest
from django.db import connection

from worker_admin.utils import WorkerUtils

from .conftest import (
    NARROW,
    WIDE,
    axe_violations,
    describe_violations,
    horizontal_overflow,
    log_in,
    new_page,
    save_screenshot,
)

pytestmark = pytest.mark.browser

FRAMES = "".join(
    f"\n    at handler{n} (/app/node_modules/some-long-package-name/dist/lib/module{n}.js:{n}:17)"
    for n in range(300)
)
ERRORS = [
    ("send_email", "SMTPRecipientsRefused: {'user4821@example.org': (550, b'mailbox full')}"),
    ("send_email", "SMTPRecipientsRefused: {'user17@example.org': (550, b'mailbox full')}"),
    ("charge_card", "CardError: declined for customer cus_4821 " + "x" * 300),
    ("resize_image", "Error: " + "averyveryverylongwordwithoutanyspaces" * 20),
]


@pytest.fixture
def failing(console_user):
    utils = WorkerUtils()
    ids = [utils.add_raw_job(task, {}).id for task, _ in ERRORS]
    with connection.cursor() as cursor:
        for job_id, (_, error) in zip(ids, ERRORS, strict=True):
            cursor.execute(
                "UPDATE graphile_worker._private_jobs SET attempts = max_attempts,"
                " last_error = %s WHERE id = %s",
                [error + FRAMES, job_id],
            )
    return console_user("olivia", "operator")


def test_failures_page__excerpt_buttons_after_a_poll_axe_and_narrow(
    live_server, browser, failing, axe_script
):
    from playwright.sync_api import expect

    page = new_page(browser, viewport=WIDE, bypass_csp=True)
    log_in(page, live_server.url, failing)
    page.goto(f"{live_server.url}/failures/")
    groups = page.locator("#failure-groups tbody tr")
    expect(groups).to_have_count(3)

    first = groups.first
    first.locator("summary").click()
    example = first.locator("pre.error-text")
    expect(example).to_be_visible()
    assert len(example.inner_text()) < 700  # the excerpt, not 8,000 characters
    expect(first.get_by_role("link", name=re.compile(r"^job \d+$"))).to_be_visible()
    save_screenshot(page, "failures-wide")

    violations = axe_violations(page, axe_script)
    assert not violations, describe_violations(violations)

    # A refresh swaps the table (htmx); the buttons still submit the page's form.
    with page.expect_response(re.compile(r"/failures/$")) as refresh:
        page.evaluate(
            "() => htmx.ajax('GET', '/failures/', {target: '#failure-groups', swap: 'outerHTML'})"
        )
    assert refresh.value.status == 200 and refresh.value.request.headers.get("hx-request")
    page.wait_for_timeout(300)  # the swap settles
    first.get_by_role("button", name="Retry this group…").click()
    expect(page.locator(".preview-count")).to_contain_text("2 jobs match the filter now")

    narrow = new_page(browser, viewport=NARROW)
    log_in(narrow, live_server.url, failing)
    narrow.goto(f"{live_server.url}/failures/")
    narrow.locator("#failure-groups tbody tr").first.locator("summary").click()
    assert horizontal_overflow(narrow) <= 1
    save_screenshot(narrow, "failures-narrow")
    page.context.close()
    narrow.context.close()
