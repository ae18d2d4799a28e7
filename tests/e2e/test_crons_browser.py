"""The Crons page in Chromium: a crontab given, one item missed (its last execution older than
its previous due time), a bad line; screenshot (docs/crons.png with UPDATE_DOCS_SCREENSHOTS=1),
axe in the light and dark theme, and nothing wider than a phone."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.e2e.conftest import (
    NARROW,
    axe_violations,
    describe_violations,
    horizontal_overflow,
    log_in,
    new_page,
    save_screenshot,
)

pytestmark = pytest.mark.browser

LONG = "rebuild_search_index_for_every_tenant_in_the_eu_region"
CRONTAB = f"""
# Sent every night; the workers missed the last ones.
0 4 * * * send_digest ?id=nightly_digest&queue=mail&priority=2 {{"audience": "all"}}
*/5 * * * * ping_hosts ?max=1
30 2 * * 1-5 {LONG} ?id={LONG}_weekdays&fill=4h
0 0 1 * * monthly_invoices ?jobKey=invoices&queue=billing
61 * * * * broken_minute
"""


@pytest.fixture
def crons_with_a_missed_one(console_user, settings):
    settings.GRAPHILE_WORKER_CRONTAB = CRONTAB
    settings.CRON_MISSED_TOLERANCE_SECONDS = 60
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO graphile_worker._private_known_crontabs "
            "(identifier, known_since, last_execution) VALUES "
            "('nightly_digest', now() - interval '40 days', "
            " date_trunc('day', now()) - interval '3 days' + interval '4 hours'), "
            "('ping_hosts', now() - interval '2 days', date_trunc('hour', now()) + "
            " floor(extract(minute from now()) / 5) * interval '5 minutes'), "
            "('rebuild_search_index_for_every_tenant_in_the_eu_region_weekdays', "
            " now() - interval '9 days', NULL), "
            "('retired_cleanup', now() - interval '200 days', now() - interval '120 days')"
        )
        cursor.execute(
            "SELECT graphile_worker.add_job('send_digest', "
            '\'{"_cron": {"ts": "2026-12-01T04:00:00Z", "backfilled": false}}\')'
        )
    return console_user("cora", "viewer")


def test_crons_page__missed_cron_screenshot_and_axe(
    live_server, browser, axe_script, crons_with_a_missed_one
):
    problems = {}
    for scheme in ("light", "dark"):
        page = new_page(browser, color_scheme=scheme, bypass_csp=True)
        log_in(page, live_server.url, crons_with_a_missed_one)
        page.goto(f"{live_server.url}/crons/")
        row = page.get_by_role("row", name="nightly_digest")
        assert "missed" in row.inner_text()
        assert page.get_by_role("link", name="Crons").get_attribute("aria-current") == "page"
        assert "minute value 61 is outside 0-59." in page.content()
        problems[scheme] = axe_violations(page, axe_script)
        save_screenshot(
            page, "crons" if scheme == "light" else "crons-dark", docs=scheme == "light"
        )
        page.context.close()
    assert not any(problems.values()), "\n".join(
        f"{scheme}:\n{describe_violations(found)}" for scheme, found in problems.items()
    )


def test_crons_page__fits_a_phone(live_server, browser, crons_with_a_missed_one):
    page = new_page(browser, viewport=NARROW)
    log_in(page, live_server.url, crons_with_a_missed_one)
    page.goto(f"{live_server.url}/crons/")
    assert page.get_by_text("nightly_digest").first.is_visible()
    save_screenshot(page, "crons-phone")
    assert horizontal_overflow(page) == 0
