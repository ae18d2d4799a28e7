"""A task's page and a queue's page in Chromium, light and dark (issue 16): reached from the tasks
and queues lists, the backlog and wait charts drawn with a gap where recording stopped, their
data tables, the range links, the queue's lock past the 4-hour mark, axe at 1280 and 390 px,
and the History link in the navigation (its own row below 1440 px, one line at 1280 px).
Screenshots: artifacts/screenshots/task-page*.png; UPDATE_DOCS_SCREENSHOTS=1 also writes
docs/task-page.png."""

from __future__ import annotations

import math
from datetime import timedelta

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
from worker_admin.history import retention
from worker_admin.history.models import HistorySnapshot
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

pytestmark = pytest.mark.browser

TASK = "reports/daily <summary>"  # a slash and markup: the URL and the page must cope


def _states(step: int) -> dict:
    wave = 1 + math.sin(step / 8)
    return {
        "ready": round(40 * wave + 5),
        "scheduled": 12,
        "locked": 1 + step % 3,
        "failed": 2 + step // 20,
        "wait": 30 + 60 * wave,
    }


def _seed_history() -> None:
    """A counts round a minute for 55 minutes, with the recorder stopped for ten of them."""
    now = retention._now()
    rows = []
    for minutes_ago in range(55, 0, -1):
        if 20 <= minutes_ago <= 29:
            continue
        rows.append(
            HistorySnapshot(
                schema="graphile_worker",
                taken_at=now - timedelta(minutes=minutes_ago),
                interval_seconds=60,
                counts={"ready": 100, "scheduled": 20, "locked": 3, "failed": 4, "retrying": 1},
                counts_exact=True,
                group_states={
                    "tasks": {TASK: _states(minutes_ago)},
                    "queues": {"emails": _states(minutes_ago + 5)},
                    "all_tasks": True,
                    "all_queues": True,
                },
            )
        )
    HistorySnapshot.objects.bulk_create(rows)


@pytest.fixture
def scene(console_user):
    WorkerUtils().add_raw_jobs(
        [RawJobSpec(TASK, {"n": i}, JobSpec(queue_name="emails")) for i in range(6)]
        + [RawJobSpec("charge_card", {"n": i}) for i in range(2)]
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE graphile_worker._private_job_queues SET locked_by = 'graphile_worker_4f9c', "
            "locked_at = now() - interval '5 hours 12 minutes' WHERE queue_name = 'emails'"
        )
        cursor.execute(
            "UPDATE graphile_worker._private_jobs SET attempts = max_attempts, last_error = 'x' "
            "WHERE id = (SELECT min(id) FROM graphile_worker._private_jobs)"
        )
    _seed_history()
    return console_user("vera", "viewer")


def test_task_page__from_the_list_charts_tables_and_ranges(live_server, browser, scene):
    page = new_page(browser)
    base = live_server.url
    log_in(page, base, scene)
    page.goto(f"{base}/tasks/")
    page.get_by_role("link", name=TASK, exact=True).click()
    page.wait_for_selector("h1")
    assert page.locator("h1").inner_text() == f"Task {TASK}"
    assert page.locator("svg.chart").count() == 2
    # The stop in recording breaks the ready line in two.
    assert page.locator("#chart-backlog .series-ready path").count() == 2
    assert page.locator(".state-card.state-ready .state-count").inner_text() == "5"
    assert page.locator(".state-card.state-failed .state-count").inner_text() == "1"
    page.locator("#chart-backlog summary").click()
    assert page.locator("#chart-backlog table tbody tr").count() == 60
    assert "—" in page.locator("#chart-backlog table").inner_text()  # the stop, as a gap
    page.get_by_role("link", name="24h").click()
    page.wait_for_url("**range=24h")
    assert page.locator("svg.chart").count() == 2
    page.locator(".state-card.state-ready").click()
    page.wait_for_url("**/jobs/**")
    assert "state=ready" in page.url
    page.context.close()


def test_queue_page__lock_past_the_four_hour_mark(live_server, browser, scene):
    page = new_page(browser)
    log_in(page, live_server.url, scene)
    page.goto(f"{live_server.url}/queues/")
    page.get_by_role("link", name="emails", exact=True).click()
    page.wait_for_url("**/queues/emails/")
    text = page.locator("main").inner_text()
    assert "graphile_worker_4f9c" in text and "past the 4-hour mark" in text
    page.get_by_role("link", name="graphile_worker_4f9c").click()
    page.wait_for_url("**/workers/graphile_worker_4f9c/**")
    page.context.close()


def test_navigation__history_link_on_its_own_row_below_1440_px(live_server, browser, scene):
    for viewport in (WIDE, NARROW):
        page = new_page(browser, viewport=viewport)
        log_in(page, live_server.url, scene)
        page.goto(f"{live_server.url}/")
        nav = page.get_by_role("navigation", name="Main")
        nav.get_by_role("link", name="History").click()
        page.wait_for_url("**/history/")
        brand = page.locator(".brand").bounding_box()
        box = nav.bounding_box()
        assert box["y"] >= brand["y"] + brand["height"] - 1  # below the brand, not beside it
        tops = {round(link.bounding_box()["y"]) for link in nav.get_by_role("link").all()}
        if viewport is WIDE:
            assert len(tops) == 1, tops  # ten links on one line
        assert horizontal_overflow(page) == 0
        page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_task_and_queue_pages__axe_and_screenshots(live_server, browser, axe_script, scene, scheme):
    from urllib.parse import quote

    problems = {}
    for viewport, suffix in ((WIDE, ""), (NARROW, "-phone")):
        page = new_page(browser, viewport=viewport, color_scheme=scheme, bypass_csp=True)
        log_in(page, live_server.url, scene)
        for name, path in (
            ("task-page", f"/tasks/{quote(TASK)}/"),
            ("queue-page", "/queues/emails/"),
        ):
            page.goto(live_server.url + path)
            page.wait_for_selector("h1")
            assert "Not found" not in page.title()
            assert horizontal_overflow(page) == 0, (name, viewport)
            problems[f"{name}{suffix}"] = axe_violations(page, axe_script)
            shot = f"{name}{suffix}" + ("-dark" if scheme == "dark" else "")
            save_screenshot(
                page, shot, docs=name == "task-page" and not suffix and scheme == "light"
            )
        page.context.close()
    found = {path: v for path, v in problems.items() if v}
    assert not found, "\n".join(f"{path}:\n{describe_violations(v)}" for path, v in found.items())


def test_worker_page__heartbeat_history_chart(live_server, browser, axe_script, scene):
    """The worker page's heartbeat chart (issue 16), seeded with a stop in recording and a
    stretch where the worker's heartbeat aged past the threshold."""
    worker = "graphile_worker_4f9c"
    now = retention._now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT graphile_worker.worker_heartbeat(%s, NULL)", [worker])
    rows = []
    for minutes_ago in range(58, 0, -1):
        if 12 <= minutes_ago <= 18:
            continue
        age = (minutes_ago % 2) * 30 + 3 + (400 if 35 <= minutes_ago <= 40 else 0)
        rows.append(
            HistorySnapshot(
                schema="graphile_worker",
                taken_at=now - timedelta(minutes=minutes_ago),
                registered_workers=1,
                heartbeats={worker: float(age)},
            )
        )
    HistorySnapshot.objects.bulk_create(rows)
    for scheme in ("light", "dark"):
        page = new_page(browser, color_scheme=scheme, bypass_csp=True)
        log_in(page, live_server.url, scene)
        page.goto(f"{live_server.url}/workers/{worker}/")
        assert page.locator("#chart-heartbeat .series-heartbeat path").count() == 2
        problems = axe_violations(page, axe_script)
        assert not problems, describe_violations(problems)
        page.locator("#heartbeat-history").screenshot(
            path=str(
                save_screenshot(page, f"worker-heartbeats-{scheme}").with_suffix(".section.png")
            )
        )
        page.context.close()
