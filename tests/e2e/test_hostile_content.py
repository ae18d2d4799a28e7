"""Hostile content stored by others renders inert: task names, queue names, keys, errors,
payloads, flags, lock holders, worker metadata and audit text carrying <script>, <img onerror>,
javascript: URLs, control characters, mojibake and very long lines.

A browser opens every page that shows them and asserts that no script ran (a dialog handler and
a window flag the payloads would set) and that nothing widens the page past the window, at
1280 px and at 390 px. The context bypasses the Content-Security-Policy on purpose: escaping
alone must keep these inert (the policy is a second wall, tested in test_csp.py).
"""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection

from tests.e2e.conftest import NARROW, WIDE, horizontal_overflow, log_in, new_page, save_screenshot
from worker_admin import audit

pytestmark = pytest.mark.browser

FLAG = "window.__pwned=1"
SCRIPT = f"<script>{FLAG};alert('script')</script>"
IMG = f"<img src=x onerror=\"{FLAG};alert('img')\">"
SVG = f"<svg onload=\"{FLAG};alert('svg')\"></svg>"
JS_URL = f"javascript:{FLAG};alert('href')"
LONG = "x" * 3000  # one unbroken line
LONG_WORDS = ("word " * 800).strip()
MOJIBAKE = "Ã©Ã¨ \ufffd\ufffd \x01\x02\x07\x1b[31m red \u202eevil.exe \u200b zero-width"
ATTRIBUTE_BREAK = f'" autofocus onfocus="{FLAG};alert(\'attr\')" x="'

# As long as the schema allows: task and queue names 128 characters, keys 512.
HOSTILE_TASKS = [SCRIPT, IMG, "task_" + "x" * 123, MOJIBAKE, ATTRIBUTE_BREAK]
HOSTILE_WORKER = f"graphile_worker_{IMG}_{LONG}"


def _sql(statement: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, list(params))
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def hostile_queue(console_user):
    """Jobs in every state whose every text column is hostile, a worker with hostile metadata
    holding one of them and a queue, and an audit entry quoting all of it."""
    payload = {
        "html": SCRIPT,
        "img": IMG,
        "href": JS_URL,
        SCRIPT: [IMG, SVG],
        "long": LONG,
        "words": LONG_WORDS,
        "odd": MOJIBAKE,
    }
    ids = []
    for n, task in enumerate(HOSTILE_TASKS):
        (job_id,) = _sql(
            "SELECT id FROM graphile_worker.add_job(%s, %s::json, queue_name => %s, "
            "job_key => %s, flags => %s)",
            [
                task,
                json.dumps(payload),
                [SCRIPT, "q_" + "x" * 126, IMG, MOJIBAKE, JS_URL][n],
                [JS_URL, "key_" + "x" * 508, SCRIPT, MOJIBAKE, ATTRIBUTE_BREAK][n],
                [IMG, SCRIPT, f"flag_{LONG[:500]}"],
            ],
        )[0]
        ids.append(job_id)
    error = f"{SCRIPT}\n{IMG}\n{LONG}\n{MOJIBAKE}\n{JS_URL}"
    # One of each state: failed, retrying, locked (by a registered hostile worker), scheduled.
    _sql(
        "UPDATE graphile_worker._private_jobs SET attempts = max_attempts, last_error = %s "
        "WHERE id = %s",
        [error, ids[0]],
    )
    _sql(
        "UPDATE graphile_worker._private_jobs SET attempts = 2, last_error = %s, "
        "run_at = now() + interval '1 hour' WHERE id = %s",
        [error, ids[1]],
    )
    _sql(
        "SELECT graphile_worker.worker_heartbeat(%s, %s::json)",
        [HOSTILE_WORKER, json.dumps({"hostname": f"{IMG}{LONG}", "pid": SCRIPT})],
    )
    _sql(
        "UPDATE graphile_worker._private_jobs SET locked_by = %s, "
        "locked_at = now() - interval '5 hours', attempts = 1 WHERE id = %s",
        [HOSTILE_WORKER, ids[2]],
    )
    _sql(
        "UPDATE graphile_worker._private_job_queues SET locked_by = %s, "
        "locked_at = now() - interval '5 hours' WHERE queue_name = %s",
        [f"{SCRIPT}_{LONG}", IMG],
    )
    _sql(
        "UPDATE graphile_worker._private_jobs SET run_at = now() + interval '1 day' WHERE id = %s",
        [ids[3]],
    )
    audit.record(
        actor=f"{SCRIPT}{LONG}",
        via="cli",
        action="complete",
        outcome="done",
        reason=f"{IMG} {LONG}",
        parameters={"note": SCRIPT, "long": LONG},
        requested_ids=ids,
        changed_ids=ids[:1],
        summary=f"{SVG} {LONG_WORDS}",
        error=MOJIBAKE,
    )
    return ids, console_user("ada", "admin")


def _pages(ids: list[int]) -> list[str]:
    tabs = [f"/jobs/?state={s}" for s in ("ready", "scheduled", "locked", "failed", "retrying")]
    return [
        "/",
        "/jobs/",
        *tabs,
        *(f"/jobs/{i}/" for i in ids),
        "/failures/",
        "/queues/",
        "/tasks/",
        "/workers/",
        "/maintenance/",
        "/audit/",
    ]


def _watch(page) -> list[str]:
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def _assert_inert(page, dialogs: list[str], where: str) -> None:
    page.wait_for_timeout(50)  # let any onerror/onload handler fire
    assert dialogs == [], f"{where}: a script ran and opened {dialogs}"
    assert page.evaluate("() => window.__pwned === undefined"), f"{where}: a script ran"
    live = page.evaluate(
        "(s) => [...document.querySelectorAll(s)].map(el => el.outerHTML.slice(0, 80))",
        "script:not([src]), [onerror], [onload], [onfocus], a[href^='javascript:' i], "
        "img[src='x'], svg[onload]",
    )
    assert live == [], f"{where}: hostile markup became elements: {live}"


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280px", "390px"])
def test_hostile_content__inert_and_no_overflow_on_every_page(
    live_server, browser, hostile_queue, viewport
):
    ids, admin = hostile_queue
    page = new_page(browser, viewport=viewport, bypass_csp=True)
    dialogs = _watch(page)
    log_in(page, live_server.url, admin)
    overflowing = {}
    for path in _pages(ids):
        page.goto(live_server.url + path)
        _assert_inert(page, dialogs, path)
        if (extra := horizontal_overflow(page)) > 0:
            overflowing[path] = extra
    # The previews list the same rows: the force-unlock of the hostile worker, a bulk action.
    page.goto(f"{live_server.url}/jobs/?state=locked")
    page.goto(f"{live_server.url}/maintenance/")
    page.get_by_label(re.compile("^Worker ids")).fill(HOSTILE_WORKER)
    page.locator("form[action$='force-unlock/']").get_by_role("button").click()
    page.wait_for_selector("h1")
    _assert_inert(page, dialogs, "force-unlock preview")
    if (extra := horizontal_overflow(page)) > 0:
        overflowing["force-unlock preview"] = extra
    page.goto(f"{live_server.url}/jobs/")
    page.get_by_label("Act on").select_option("filter")
    page.get_by_label("Action").select_option("retry")
    page.get_by_role("button", name="Preview").click()
    page.wait_for_selector(".preview-count")
    _assert_inert(page, dialogs, "action preview")
    if (extra := horizontal_overflow(page)) > 0:
        overflowing["action preview"] = extra
    if viewport is NARROW:
        save_screenshot(page, "hostile-action-preview-390")
    assert overflowing == {}, f"pages wider than the {viewport['width']} px window: {overflowing}"
    page.context.close()


def test_hostile_content__clicking_a_javascript_key_does_nothing(
    live_server, browser, hostile_queue
):
    """A key that looks like a javascript: URL is text, even where it is a link's target."""
    ids, admin = hostile_queue
    page = new_page(browser, bypass_csp=True)
    dialogs = _watch(page)
    log_in(page, live_server.url, admin)
    page.goto(f"{live_server.url}/jobs/{ids[0]}/")
    for link in page.locator("main a").all():
        href = link.get_attribute("href") or ""
        assert not href.strip().lower().startswith("javascript:"), href
    page.get_by_text(JS_URL, exact=False).first.click()
    _assert_inert(page, dialogs, "after clicking the key")
    page.context.close()
