"""An operator adds one job through the form (preview, then add) and a batch from pasted JSON,
and a bad batch is refused whole with the item that is wrong."""

import json
import re

import pytest

from tests.e2e.conftest import log_in, save_screenshot
from worker_admin.audit import AuditEntry
from worker_admin.models import Job

pytestmark = pytest.mark.browser


def test_add_job_flow__one_job_previewed_then_added(live_server, page, console_user):
    from playwright.sync_api import expect

    log_in(page, live_server.url, console_user("olivia", "operator"))
    page.goto(f"{live_server.url}/jobs/")
    page.get_by_role("link", name=re.compile("^Add")).first.click()
    expect(page.get_by_role("heading", name="Add a job")).to_be_visible()
    page.get_by_label(re.compile("^Task identifier")).fill("send_invoice")
    page.get_by_label(re.compile("^Payload")).fill('{"invoice": 1042, "to": "a@example.org"}')
    page.get_by_label("Queue", exact=True).fill("billing")
    page.get_by_label("Priority").fill("-5")
    page.get_by_label("Key", exact=True).fill("invoice:1042")
    page.get_by_role("button", name="Preview").click()

    expect(page.get_by_role("button", name="Add this job")).to_be_visible()
    expect(page.locator("main")).to_contain_text("send_invoice")
    expect(page.locator("main")).to_contain_text("invoice:1042")
    save_screenshot(page, "add-job-preview")
    assert not Job.objects.filter(task__identifier="send_invoice").exists()  # not yet

    page.get_by_role("button", name="Add this job").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Job \d+"))).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("Added job")
    job = Job.objects.select_related("job_queue").get(task__identifier="send_invoice")
    assert (job.key, job.priority, job.job_queue.queue_name) == ("invoice:1042", -5, "billing")
    assert job.payload == {"invoice": 1042, "to": "a@example.org"}
    assert AuditEntry.objects.filter(action="add_job", outcome="done").count() == 1

    # The confirmation works once: going back and confirming again adds nothing.
    page.go_back()
    if page.get_by_role("button", name="Add this job").count():
        page.get_by_role("button", name="Add this job").click()
    assert Job.objects.filter(task__identifier="send_invoice").count() == 1


def test_add_job_flow__batch_from_pasted_json(live_server, page, console_user):
    from playwright.sync_api import expect

    log_in(page, live_server.url, console_user("olivia", "operator"))
    page.goto(f"{live_server.url}/jobs/add/batch/")
    bad = [{"identifier": "resize_image", "payload": {"n": 1}}, {"identifier": "", "priority": 1}]
    page.get_by_label("Paste a JSON array").fill(json.dumps(bad))
    page.get_by_role("button", name="Preview").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Nothing was added")
    expect(alert).to_contain_text("item 1")
    assert not Job.objects.filter(task__identifier="resize_image").exists()

    batch = [
        {"identifier": "resize_image", "payload": {"n": n}, "queue_name": "images"}
        for n in range(7)
    ]
    page.get_by_label("Paste a JSON array").fill(json.dumps(batch))
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("button", name="Add 7 jobs")).to_be_visible()
    save_screenshot(page, "add-batch-preview")
    page.get_by_role("button", name="Add 7 jobs").click()
    expect(page.locator(".messages")).to_contain_text("7")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    assert Job.objects.filter(task__identifier="resize_image").count() == 7
