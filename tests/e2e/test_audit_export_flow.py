"""An auditor filters the audit log and downloads it as CSV and JSON, and reads the files."""

import csv
import io
import json
from pathlib import Path

import pytest

from tests.e2e.conftest import log_in, save_screenshot
from worker_admin import audit

pytestmark = pytest.mark.browser


@pytest.fixture
def history(console_user):
    for n in range(3):
        audit.record(
            actor="olivia",
            via="web",
            action="reschedule",
            outcome="done",
            reason=f"drain batch {n}",
            requested_ids=[n + 1],
            changed_ids=[n + 1],
            summary="changed 1 of 1",
        )
    # A reason a spreadsheet would run as a formula, and a refused attempt.
    audit.record(
        actor="mallory",
        via="web",
        action="complete",
        outcome="rejected",
        reason='=HYPERLINK("http://evil.example","click")',
        summary="rejected; nothing changed",
        error="forbidden",
    )
    return console_user("ada", "admin")


def test_audit_export_flow__csv_and_json_downloads(live_server, page, history):
    from playwright.sync_api import expect

    log_in(page, live_server.url, history)
    page.get_by_role("link", name="Audit").click()
    expect(page.locator("table.audit tbody tr")).to_have_count(4)
    save_screenshot(page, "audit")

    with page.expect_download() as info:
        page.get_by_role("link", name="CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("audit-")
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert len(rows) == 4
    assert {r["action"] for r in rows} == {"reschedule", "complete"}
    formula = next(r for r in rows if r["actor_name"] == "mallory")
    assert formula["reason"].startswith("'=")  # quoted, so a spreadsheet shows it as text
    assert formula["outcome"] == "rejected"
    assert json.loads(next(r for r in rows if r["reason"] == "drain batch 1")["changed_ids"]) == [2]

    # Filtered: only what the filter shows is exported.
    page.goto(f"{live_server.url}/audit/?action=reschedule")
    expect(page.locator("table.audit tbody tr")).to_have_count(3)
    with page.expect_download() as info:
        page.get_by_role("link", name="JSON").click()
    entries = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    assert [e["action"] for e in entries] == ["reschedule"] * 3
    assert sorted(e["reason"] for e in entries) == [f"drain batch {n}" for n in range(3)]
