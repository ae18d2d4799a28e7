"""The overview's history charts in Chromium, light and dark: the SVG charts draw (a gap where
recording stopped), the range links swap the charts in place through htmx and keep a
shareable URL, the data tables open, and axe finds nothing serious on the overview, /history/
and the tasks page with its sparklines. Screenshots: artifacts/screenshots/history-*.png
(UPDATE_DOCS_SCREENSHOTS=1 also writes docs/history-light.png and docs/history-dark.png)."""

from __future__ import annotations

import math
import os
from datetime import timedelta

import pytest

from tests.e2e.conftest import (
    ARTIFACTS,
    DOCS,
    axe_violations,
    describe_violations,
    log_in,
    new_page,
    save_screenshot,
)
from worker_admin.history import retention
from worker_admin.history.models import MINUTE, HistorySnapshot
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

pytestmark = pytest.mark.browser


def _seed_history() -> None:
    """An hour of 10-second snapshots with a 10-minute stop, and a week of minute rows."""
    now = retention._now()
    rows = []
    for step in range(360, 0, -1):
        minutes_ago = step / 6
        if 18 <= minutes_ago <= 27:
            continue  # the recorder was stopped
        wave = 1 + math.sin(step / 25)
        counts = None
        if step % 6 == 0:
            counts = {
                "ready": round(400 * wave + step),
                "scheduled": 120,
                "locked": 8 + step % 5,
                "failed": 25 + step // 60,
                "retrying": 12,
            }
        rows.append(
            HistorySnapshot(
                schema="graphile_worker",
                taken_at=now - timedelta(minutes=minutes_ago),
                interval_seconds=10,
                added=round(30 * wave + 10),
                deleted=round(28 * wave + 9),
                failed=2 if step % 7 == 0 else 0,
                failed_interval_seconds=10,
                counts=counts,
                counts_exact=True,
                by_task={"send_email": 30 + step % 40, "charge_card": 5 + step % 9},
                by_queue={"emails": 30 + step % 40},
                oldest_ready_seconds=60 + 90 * wave,
            )
        )
    for hour in range(24 * 7, 1, -1):
        rows.append(
            HistorySnapshot(
                schema="graphile_worker",
                taken_at=now - timedelta(hours=hour),
                resolution=MINUTE,
                interval_seconds=60,
                added=150 + hour % 24 * 10,
                deleted=140 + hour % 24 * 10,
                failed=3,
                failed_interval_seconds=60,
                counts={"ready": 200 + hour % 24 * 20, "scheduled": 100, "locked": 8, "failed": 20},
                counts_exact=True,
                oldest_ready_seconds=30 + hour % 24 * 5,
                by_task={"send_email": 40 + hour % 12 * 6, "charge_card": 9 - hour % 8},
                by_queue={"emails": 40 + hour % 12 * 6},
            )
        )
    HistorySnapshot.objects.bulk_create(rows)


@pytest.fixture
def charted(console_user):
    utils = WorkerUtils()
    utils.add_raw_jobs(
        [RawJobSpec("send_email", {"n": i}, JobSpec(queue_name="emails")) for i in range(5)]
        + [RawJobSpec("charge_card", {"n": i}) for i in range(2)]
    )
    _seed_history()
    return console_user("vera", "viewer")


def _shoot(page, name: str) -> None:
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    charts = page.locator("#history-charts")
    charts.screenshot(path=str(folder / f"{name}.png"))
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
        charts.screenshot(path=str(DOCS / f"{name}.png"))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_history_charts__draw_switch_range_and_pass_axe(
    live_server, browser, axe_script, charted, scheme
):
    page = new_page(browser, color_scheme=scheme, bypass_csp=True)
    base = live_server.url
    log_in(page, base, charted)
    page.goto(f"{base}/")
    assert page.locator("svg.chart").count() == 3
    # The stop in recording breaks each throughput line in two.
    assert page.locator("#chart-throughput .series-added path").count() == 2
    _shoot(page, f"history-{scheme}")
    problems = {"/": axe_violations(page, axe_script)}

    page.locator("#chart-backlog summary").click()
    assert page.locator("#chart-backlog table tbody tr").count() == 60

    page.get_by_role("link", name="24h").click()
    page.wait_for_url("**/?range=24h")
    page.locator('#history-charts a[aria-current="page"]', has_text="24h").wait_for()
    assert page.locator("#chart-wait table tbody tr").count() == 96

    page.goto(f"{base}/?range=7d")
    assert page.locator("#chart-throughput table tbody tr").count() == 84
    for path in ("/history/", "/tasks/", "/queues/"):
        page.goto(base + path)
        problems[path] = axe_violations(page, axe_script)
        save_screenshot(page, f"history-{scheme}{path.replace('/', '-').rstrip('-')}")
    assert page.locator("svg.sparkline").count() == 1  # the queues page: one queue recorded
    assert not any(problems.values()), describe_violations(
        [v for found in problems.values() for v in found]
    )
