"""Accessibility: axe-core on every main page in the light and the dark theme, labels on every
control, a visible focus ring, and the main flows done with the keyboard alone.

axe-core comes from npm (tests/node/package.json) and is injected by Playwright; a page passes
when axe reports no "serious" or "critical" violation (WCAG 2.1 A/AA and best practices).
"""

from __future__ import annotations

import re

import pytest
from django.db import connection

from tests.e2e.conftest import (
    axe_violations,
    describe_violations,
    log_in,
    new_page,
    save_screenshot,
)
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

pytestmark = pytest.mark.browser


@pytest.fixture
def queue_with_history(console_user):
    """Jobs in every state, a failure group, a registered worker and an audit entry."""
    utils = WorkerUtils()
    utils.add_raw_jobs(
        [RawJobSpec("send_email", {"n": i}, JobSpec(queue_name="emails")) for i in range(30)]
        + [RawJobSpec("charge_card", {"n": i}, JobSpec(priority=-1)) for i in range(5)]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE graphile_worker._private_jobs SET attempts = max_attempts, "
            "last_error = 'card declined: code 51' WHERE id IN (SELECT id FROM "
            "graphile_worker._private_jobs ORDER BY id DESC LIMIT 3)"
        )
        cursor.execute("SELECT graphile_worker.worker_heartbeat('graphile_worker_a11y')")
        cursor.execute(
            "UPDATE graphile_worker._private_jobs SET locked_by = 'graphile_worker_a11y', "
            "locked_at = now() - interval '3 minutes', attempts = 1 WHERE id = "
            "(SELECT min(id) FROM graphile_worker._private_jobs)"
        )
    return console_user("ada", "admin")


def _first_job_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM graphile_worker._private_jobs")
        return cursor.fetchone()[0]


PAGES = [
    "/",
    "/jobs/",
    "/jobs/?state=ready",
    "/jobs/?state=scheduled",
    "/jobs/?state=locked",
    "/jobs/?state=failed",
    "/jobs/?state=retrying",
    "/jobs/?priority_min=abc",  # with a notice
    "/jobs/?task=nothing-matches",  # the empty state
    "/failures/",
    "/queues/",
    "/tasks/",
    "/workers/",
    "/crons/",  # the empty state; tests/e2e/test_crons_browser.py has a missed cron
    "/maintenance/",
    "/audit/",
    "/jobs/add/",
    "/jobs/add/batch/",
]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_accessibility__axe_finds_nothing_serious_on_any_page(
    live_server, browser, axe_script, queue_with_history, scheme
):
    page = new_page(browser, color_scheme=scheme, bypass_csp=True)
    base = live_server.url
    page.goto(f"{base}/login/")
    problems = {"/login/": axe_violations(page, axe_script)}
    log_in(page, base, queue_with_history)
    for path in [*PAGES, f"/jobs/{_first_job_id()}/"]:
        page.goto(base + path)
        problems[path] = axe_violations(page, axe_script)
        if scheme == "dark":
            save_screenshot(page, "dark" + re.sub(r"[^a-z0-9]+", "-", path).rstrip("-"))

    # Pages that only a POST shows: an action preview, a form with errors, a sweep dry run.
    page.goto(f"{base}/jobs/?state=ready")
    page.locator("table.jobs tbody input[type=checkbox]").first.check()
    page.get_by_label("Action").select_option("complete")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector(".preview-count")
    problems["action preview"] = axe_violations(page, axe_script)
    page.goto(f"{base}/jobs/add/")
    page.get_by_label(re.compile("^Task identifier")).fill("")
    page.get_by_label(re.compile("^Payload")).fill("{not json")
    page.get_by_role("button", name=re.compile("Preview")).click()
    page.wait_for_selector("[role=alert]")
    problems["add job with errors"] = axe_violations(page, axe_script)
    page.goto(f"{base}/maintenance/")
    page.get_by_role("button", name="Dry run…").click()
    page.wait_for_selector("h1")
    problems["sweep dry run"] = axe_violations(page, axe_script)

    found = {path: v for path, v in problems.items() if v}
    assert not found, "\n".join(f"{path}:\n{describe_violations(v)}" for path, v in found.items())
    page.context.close()


def _tab_to(page, selector: str, limit: int = 120) -> None:
    """Press Tab until the focused element matches `selector` (fails after `limit` presses)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => !!document.activeElement?.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def _focus_ring(page) -> tuple[str, float]:
    return tuple(
        page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
        )
    )


def _assert_focus_visible(page) -> None:
    style, width = _focus_ring(page)
    assert style != "none" and width >= 2, (style, width)


def test_accessibility__keyboard_only_filter_open_and_complete_a_job(
    live_server, browser, queue_with_history, console_user
):
    from playwright.sync_api import expect

    username, password = console_user("kim", "operator")
    page = new_page(browser)
    base = live_server.url
    page.goto(f"{base}/login/")
    # The user name field has focus on arrival; the rest is Tab, typing and Enter.
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()

    page.goto(f"{base}/jobs/")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.classList.contains('skip-link')")
    assert page.locator(".skip-link").bounding_box()["x"] >= 0  # shown when focused
    _tab_to(page, "input[name=task]")
    _assert_focus_visible(page)
    page.keyboard.type("send_email")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"task=send_email"))
    expect(page.locator("table.jobs")).not_to_contain_text("charge_card")

    _tab_to(page, "table.jobs tbody input[type=checkbox]")
    _assert_focus_visible(page)
    page.keyboard.press("Space")
    expect(page.locator("table.jobs tbody input[type=checkbox]").first).to_be_checked()

    _tab_to(page, "table.jobs tbody a[href*='/jobs/']")
    _assert_focus_visible(page)
    job_id = page.evaluate("() => document.activeElement.textContent.trim()")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile(f"^Job {job_id}"))).to_be_visible()

    # The action, its preview and its confirmation, by keyboard.
    _tab_to(page, "button[value=complete]")
    _assert_focus_visible(page)
    page.keyboard.press("Enter")
    expect(page.locator(".preview-count")).to_contain_text("Found 1 of the 1 chosen job")
    _tab_to(page, "textarea[name=reason]")
    _assert_focus_visible(page)
    page.keyboard.type("done by hand, keyboard only")
    _tab_to(page, ".form-actions button[type=submit]")
    _assert_focus_visible(page)
    page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_contain_text("changed 1 of 1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM graphile_worker._private_jobs WHERE id = %s", [job_id])
        assert cursor.fetchone()[0] == 0  # completed jobs are deleted
    page.context.close()


def test_accessibility__every_control_has_a_label(live_server, browser, queue_with_history):
    from playwright.sync_api import expect

    page = new_page(browser)
    log_in(page, live_server.url, queue_with_history)
    page.goto(f"{live_server.url}/jobs/")
    rows = page.locator("table.jobs tbody tr").count()
    expect(page.get_by_role("checkbox", name=re.compile(r"^Pick job \d+$"))).to_have_count(rows)
    expect(page.get_by_role("searchbox", name=re.compile("^Search"))).to_be_visible()
    for path in [
        "/jobs/",
        "/failures/",
        "/queues/",
        "/workers/",
        "/maintenance/",
        "/audit/",
        "/jobs/add/",
        "/jobs/add/batch/",
    ]:
        page.goto(live_server.url + path)
        unnamed = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(el => !el.labels?.length && !el.getAttribute('aria-label')
                               && !el.getAttribute('aria-labelledby'))
                 .map(el => el.outerHTML.slice(0, 120))"""
        )
        assert unnamed == [], f"{path}: controls without a label: {unnamed}"
    page.context.close()


def test_accessibility__keyboard_only_bulk_action_preview_and_confirm(
    live_server, browser, queue_with_history, console_user
):
    """Every job matching a filter, by keyboard: the scope and action selects change with the
    arrow keys, the preview and the confirmation are reached with Tab."""
    from playwright.sync_api import expect

    page = new_page(browser)
    log_in(page, live_server.url, console_user("kim", "operator"))
    page.goto(f"{live_server.url}/jobs/?task=charge_card&state=ready")
    _tab_to(page, "select[name=scope]")
    _assert_focus_visible(page)
    page.keyboard.press("ArrowDown")  # "every job matching these filters"
    assert page.locator("select[name=scope]").input_value() == "filter"
    _tab_to(page, "select[name=action]")
    page.keyboard.press("ArrowDown")  # "Retry"
    page.keyboard.press("ArrowDown")  # "Reschedule…"
    assert page.locator("select[name=action]").input_value() == "reschedule"
    _tab_to(page, "#bulk-form button[type=submit]")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name=re.compile("^Reschedule"))).to_be_visible()
    _tab_to(page, "input[name=priority]")
    _assert_focus_visible(page)
    page.keyboard.type("3")
    page.keyboard.press("Enter")  # submits the options form: the preview
    expect(page.locator(".preview-count")).to_contain_text("2 jobs match the filter now")
    _tab_to(page, ".form-actions button[type=submit]")
    _assert_focus_visible(page)
    page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_contain_text("changed 2 of 2")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT j.priority FROM graphile_worker._private_jobs j JOIN "
            "graphile_worker._private_tasks t ON t.id = j.task_id "
            "WHERE t.identifier = 'charge_card' AND j.attempts < j.max_attempts"
        )
        assert sorted(p for (p,) in cursor.fetchall()) == [3, 3]
    page.context.close()
