"""The jobs table in Chromium (issue 13): at 1280 px the failed tab's last error takes the room
and the locked tab shows lock ages against the 4-hour mark; at 390 px every job is a card and the
page never scrolls sideways. The screenshots go to artifacts/screenshots/ (and, with
UPDATE_DOCS_SCREENSHOTS=1, to docs/ for the README)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import NARROW, WIDE, log_in, new_page, save_screenshot
from tests.factories import JobFactory
from worker_admin.demo.seed import seed_demo
from worker_admin.utils import WorkerUtils

pytestmark = pytest.mark.browser

LONG_KEY = "invoice-reminder:tenant-4711:customer-98765432:2026-12-04T08:00:00Z:attempt-window-3"
LONG_ERROR = (
    "PaymentProviderError: the card issuer declined the charge (code do_not_honor) after 3 "
    "retries; request req_9f8e7d6c5b4a, idempotency key charge-2026-12-04-000123, upstream "
    "https://api.payments.example.com/v2/charges answered 402 in 1843 ms"
)


@pytest.fixture
def demo(console_user):
    utils = WorkerUtils()
    seed_demo(utils, jobs=300)
    # One failed job with a long key and a long error: the key must give way, not the error.
    factory = JobFactory(utils)
    job = factory.failed("charge_card", error=LONG_ERROR, job_key=LONG_KEY)
    factory.set(job, updated_at="now()")
    return console_user("dora", "admin")


def _scroll_width_fits(page) -> bool:
    return page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")


def test_job_tables__failed_tab_at_1280_gives_the_error_the_room(live_server, browser, demo):
    page = new_page(browser, viewport=WIDE)
    log_in(page, live_server.url, demo)
    page.goto(f"{live_server.url}/jobs/?state=failed&sort=updated")
    row = page.locator("table.jobs tbody tr").first
    error = row.locator(".error-excerpt")
    assert error.inner_text().startswith("PaymentProviderError: the card issuer declined")
    error_box, key_box = error.bounding_box(), row.locator(".key-cell .clip").bounding_box()
    # The error column is the widest, wide enough for a sentence per line; the key is cut.
    assert error_box["width"] >= 380, error_box
    assert key_box["width"] <= 140, key_box
    assert row.locator(".key-cell .clip").get_attribute("title") == LONG_KEY
    assert error_box["x"] + error_box["width"] <= 1280
    assert _scroll_width_fits(page)
    save_screenshot(page, "failed-tab", docs=True)
    page.context.close()


def test_job_tables__locked_tab_at_1280_shows_lock_ages_and_sorts_by_them(
    live_server, browser, demo
):
    page = new_page(browser, viewport=WIDE)
    log_in(page, live_server.url, demo)
    page.goto(f"{live_server.url}/jobs/?state=locked")
    page.get_by_role("link", name="Lock age").click()
    page.wait_for_url("**sort=lock_age**")
    first = page.locator("table.jobs tbody tr").first
    # The demo's vanished Node pool has held its jobs for 6 hours: oldest first, flagged.
    assert first.locator(".lock-age").inner_text().split()[:1] == ["6h"]
    assert "past the 4-hour mark" in first.locator(".lock-age").inner_text()
    assert "pool-7f3a9c2e1b" in first.locator(".state-cell").inner_text()
    ages = page.locator("table.jobs td.lock-age").all_inner_texts()
    assert len(ages) > 20 and any("of 4 h" in age for age in ages)
    assert page.get_by_text("no index orders jobs by when they were locked").is_visible()
    assert _scroll_width_fits(page)
    save_screenshot(page, "locked-tab", docs=True)
    page.context.close()


@pytest.mark.parametrize(
    ("name", "path", "when"),
    [
        ("jobs-phone", "/jobs/", "Run at"),
        ("failed-tab-phone", "/jobs/?state=failed&sort=updated", "Run at"),
        ("locked-tab-phone", "/jobs/?state=locked&sort=lock_age", "Lock age"),
    ],
)
def test_job_tables__on_a_phone_every_job_is_a_card(live_server, browser, demo, name, path, when):
    page = new_page(browser, viewport=NARROW)
    log_in(page, live_server.url, demo)
    page.goto(live_server.url + path)
    assert _scroll_width_fits(page), page.evaluate("document.scrollingElement.scrollWidth")
    rows = page.locator("table.jobs tbody tr")
    assert rows.count() >= 5
    for index in range(5):
        row = rows.nth(index)
        box = row.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"], box
        for part in (".job-id", ".task-cell", ".state-cell .pill", f"td[data-label='{when}']"):
            cell = row.locator(part)
            assert cell.is_visible(), (index, part)
            cell_box = cell.bounding_box()
            assert cell_box["x"] + cell_box["width"] <= NARROW["width"], (index, part, cell_box)
        if "failed" in path:
            assert row.locator(".error-excerpt").is_visible()
    # A card: id, task and state share its first line; the error (when any) spans the card.
    first = rows.first
    tops = [first.locator(p).bounding_box()["y"] for p in (".job-id", ".task-cell", ".pill")]
    assert max(tops) - min(tops) < 16, tops
    page.locator("nav.tabs").evaluate("tabs => tabs.scrollIntoView()")  # the README shows cards
    save_screenshot(page, name, docs=True)
    page.context.close()


@pytest.mark.parametrize("path", ["/", "/failures/", "/queues/", "/tasks/", "/workers/"])
def test_job_tables__other_tables_fit_a_phone(live_server, browser, demo, path):
    page = new_page(browser, viewport=NARROW)
    log_in(page, live_server.url, demo)
    page.goto(live_server.url + path)
    assert _scroll_width_fits(page), page.evaluate("document.scrollingElement.scrollWidth")
    # No table hides columns behind a sideways scroll of its own either: rows become cards.
    hidden = page.evaluate(
        "() => [...document.querySelectorAll('.table-wrap')]"
        ".filter(w => w.scrollWidth > w.clientWidth + 1).map(w => w.scrollWidth)"
    )
    save_screenshot(page, "phone-" + (path.strip("/") or "overview"))
    assert hidden == []
    page.context.close()


def test_favicon__admin_and_api_docs_pages_load_without_a_404(live_server, browser, demo):
    page = new_page(browser, viewport=WIDE)
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    log_in(page, live_server.url, demo)
    for path in ("/django-admin/", "/api/docs"):
        page.goto(live_server.url + path)
        page.wait_for_load_state("networkidle")
    icon = page.request.get(f"{live_server.url}/favicon.ico")
    assert icon.status == 200 and icon.body()[:4] == b"\x00\x00\x01\x00"
    assert missing == []
    page.context.close()


def test_reschedule_form__prefilled_in_utc_and_confirmed_in_a_browser(live_server, browser, demo):
    """From a failed job's page: the form holds the job's values (run at as ISO 8601 UTC);
    changing only attempts and max attempts keeps its run at."""
    from playwright.sync_api import expect

    from worker_admin.forms_actions import utc_iso
    from worker_admin.models import Job

    job = Job.objects.failed().order_by("id").first()
    page = new_page(browser, viewport=WIDE)
    log_in(page, live_server.url, demo)
    page.goto(f"{live_server.url}/jobs/{job.id}/")
    page.get_by_role("button", name="Reschedule…").click()
    run_at = page.get_by_label("Run at, UTC")
    expect(run_at).to_have_value(utc_iso(job.run_at))
    expect(page.get_by_label("Max attempts")).to_have_value(str(job.max_attempts))
    page.get_by_label("Attempts", exact=True).fill("0")
    page.get_by_label("Max attempts").fill(str(job.max_attempts + 2))
    save_screenshot(page, "reschedule-form")
    page.get_by_role("button", name="Preview").click()
    page.get_by_label("Reason").fill("the payment provider is back")
    page.get_by_role("button", name="Reschedule: 1 job").click()
    page.wait_for_url(f"**/jobs/{job.id}/")
    after = Job.objects.get(id=job.id)
    assert (after.attempts, after.max_attempts, after.run_at) == (
        0,
        job.max_attempts + 2,
        job.run_at,
    )
    page.goto(f"{live_server.url}/no-such-page/")
    expect(page.get_by_text("No page at this address.")).to_be_visible()
    save_screenshot(page, "not-found")
    page.context.close()
