"""The Content-Security-Policy in a real Chromium: the main pages raise no violation and still
work under it (htmx polling and posting, the copy button, the reveal form). A deliberate
violation is caught first, so a silent listener cannot pass the test."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group

from worker_admin.roles import ensure_groups
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

pytestmark = pytest.mark.browser

PAGES = [
    "/",
    "/jobs/",
    "/jobs/?state=failed",
    "/failures/",
    "/queues/",
    "/tasks/",
    "/workers/",
    "/maintenance/",
    "/audit/",
    "/history/",
    "/jobs/add/",
    "/jobs/add/batch/",
    "/django-admin/",
    "/django-admin/auth/user/",
    "/api/docs",
]

# Records every violation the page reports, before any of its own scripts run.
LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


@pytest.fixture
def csp_page(browser, live_server):
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
        base_url=live_server.url,
    )
    context.add_init_script(LISTENER)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.csp_console = console
    yield page
    context.close()


def violations(page) -> list[str]:
    reported = page.evaluate("window.__cspViolations")
    logged = [text for text in page.csp_console if "Content Security Policy" in text]
    return reported + logged


@pytest.fixture
def queue(worker_rows, django_user_model, settings):
    ensure_groups()
    settings.POLL_INTERVAL_SECONDS = 2
    settings.REDACT_PAYLOAD_PATHS = ["secret"]
    WorkerUtils().add_raw_jobs(
        [
            RawJobSpec("send_email", {"to": f"u{i}@example.org", "secret": "hunter2"})
            for i in range(5)
        ]
        + [RawJobSpec("report", {"n": 1}, JobSpec(queue_name="reports"))]
    )
    user = django_user_model.objects.create_user("ada", password="ada-password-1", is_staff=True)
    user.groups.add(Group.objects.get(name="admin"))
    return "ada", "ada-password-1"


def _login(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Overview").wait_for()


def test_csp__a_deliberate_violation_is_caught(csp_page, queue):
    csp_page.goto("/login/")
    assert violations(csp_page) == []
    csp_page.evaluate(
        "document.body.insertAdjacentHTML('beforeend', "
        "'<img src=\"https://cdn.example.invalid/x.png\">')"
    )
    csp_page.wait_for_function("window.__cspViolations.length > 0")
    assert any(v.startswith("img-src") for v in violations(csp_page))


def test_csp__main_pages_raise_no_violation(csp_page, queue):
    from playwright.sync_api import expect

    _login(csp_page, *queue)
    for url in PAGES:
        csp_page.goto(url)
        expect(csp_page.locator("body")).to_be_visible()
        csp_page.wait_for_load_state("networkidle")
        assert violations(csp_page) == [], url


def test_csp__htmx_polling_and_the_copy_button_work_under_the_policy(csp_page, queue):
    from playwright.sync_api import expect

    _login(csp_page, *queue)
    # htmx polls the overview: a request with HX-Request arrives and swaps in.
    with csp_page.expect_request(
        lambda request: request.headers.get("hx-request") == "true", timeout=15_000
    ) as polled:
        pass
    assert polled.value.url.startswith(csp_page.url.split("?")[0].rstrip("/"))
    response = polled.value.response()
    assert response is not None and response.status == 200

    # Job detail: the payload is redacted; the copy button copies what is shown.
    csp_page.goto("/jobs/?task=send_email")
    csp_page.locator("table.jobs tbody tr").first.get_by_role("link").first.click()
    expect(csp_page.locator("#payload")).to_contain_text("[redacted]")
    csp_page.get_by_role("button", name="Copy payload").click()
    expect(csp_page.get_by_role("button", name="Copied")).to_be_visible()
    copied = csp_page.evaluate("navigator.clipboard.readText()")
    assert "[redacted]" in copied and "hunter2" not in copied

    # The reveal form posts (form-action 'self') and shows the whole payload once.
    csp_page.get_by_role("button", name="Reveal the whole payload").click()
    expect(csp_page.locator("#payload")).to_contain_text("hunter2")
    assert violations(csp_page) == []


def test_csp__a_bulk_action_posts_and_applies_under_the_policy(csp_page, queue):
    """Forms post to the console itself (form-action 'self') with their CSRF field."""
    from playwright.sync_api import expect

    _login(csp_page, *queue)
    csp_page.goto("/jobs/?task=send_email")
    csp_page.get_by_label("Act on").select_option("filter")
    csp_page.get_by_label("Action").select_option("fail")
    csp_page.get_by_role("button", name="Preview").click()
    expect(csp_page.get_by_role("heading", name=re.compile("Permanently fail"))).to_be_visible()
    reason = csp_page.get_by_label(re.compile("Reason"))
    if reason.count():
        reason.fill("csp check")
    csp_page.get_by_role("button", name="Permanently fail: 5 jobs").click()
    expect(csp_page.locator(".messages")).to_contain_text("changed 5 of 5")
    assert violations(csp_page) == []
