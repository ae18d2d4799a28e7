"""Queues and tasks: every row counted by state, locks and waits, and their pages."""

import html
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.urls import reverse

from tests.test_failures import rls_role_reads
from worker_admin.catalog import QueueRow, TaskRow, queue_report, task_report
from worker_admin.stats import StateCounts


def _text(response) -> str:
    """The page's visible text: tags dropped, white space folded, entities decoded."""
    without_tags = re.sub(r"<[^>]*>", "", response.content.decode())
    return html.unescape(re.sub(r"\s+", " ", without_tags))


@pytest.fixture
def queues(jobs):
    """emails: two ready jobs, one locked job, its queue locked 2 minutes ago (normal);
    reports: a failed job, its queue locked 5 hours ago by a worker that holds no job (stale);
    idle: a queue row without jobs; plus a job without any queue."""
    jobs.ready("send_email", queue_name="emails")
    jobs.set(jobs.ready("send_email", queue_name="emails"), run_at="now() - interval '2 hours'")
    jobs.locked(by="graphile_worker_aa", age="2 minutes", queue_name="emails")
    jobs.failed("generate_report", queue_name="reports")
    jobs.scheduled("generate_report", queue_name="reports")
    jobs.ready("resize_image")
    jobs.sql(f"INSERT INTO {jobs.q}._private_job_queues (queue_name) VALUES ('idle')")
    for name, holder, age in (
        ("emails", "graphile_worker_aa", "2 minutes"),
        ("reports", "pool-7f3a9c2e1b", "5 hours"),
    ):
        jobs.sql(
            f"UPDATE {jobs.q}._private_job_queues SET locked_by = %s, "
            f"locked_at = now() - %s::interval WHERE queue_name = %s",
            [holder, age, name],
        )


def test_queue_report__every_queue_with_counts_and_locks(queues):
    report = queue_report(settings.WORKER_DATABASE)
    assert report.queues == [
        QueueRow(
            name="reports",
            counts=StateCounts(scheduled=1, failed=1),
            oldest_ready_age=None,
            locked_by="pool-7f3a9c2e1b",
            locked_at=report.now - timedelta(hours=5),
            lock_age=timedelta(hours=5),
        ),
        QueueRow(
            name="emails",
            counts=StateCounts(ready=2, locked=1),
            oldest_ready_age=timedelta(hours=2),
            locked_by="graphile_worker_aa",
            locked_at=report.now - timedelta(minutes=2),
            lock_age=timedelta(minutes=2),
        ),
        QueueRow(
            name="idle",
            counts=StateCounts(),
            oldest_ready_age=None,
            locked_by=None,
            locked_at=None,
            lock_age=None,
        ),
    ]
    assert [
        (q.is_locked, q.lock_is_old, q.lock_without_job, q.lock_is_suspect) for q in report.queues
    ] == [(True, True, True, True), (True, False, False, False), (False, False, False, False)]
    assert (report.locked, report.suspect, report.truncated) == (2, 1, False)


def test_queue_report__lock_older_than_four_hours_with_a_locked_job(jobs):
    jobs.locked(by="pool-1", age="6 hours", queue_name="webhooks")
    jobs.sql(
        f"UPDATE {jobs.q}._private_job_queues SET locked_by = 'pool-1', "
        "locked_at = now() - interval '6 hours'"
    )
    (row,) = queue_report(settings.WORKER_DATABASE).queues
    assert (row.counts.locked, row.lock_is_old, row.lock_without_job, row.lock_is_suspect) == (
        1,
        True,
        False,
        True,
    )


def test_queue_report__name_filter_and_limit(queues):
    alias = settings.WORKER_DATABASE
    assert [q.name for q in queue_report(alias, name_contains="mail").queues] == ["emails"]
    assert [q.name for q in queue_report(alias, name_contains="%").queues] == []
    limited = queue_report(alias, limit=2)
    assert ([q.name for q in limited.queues], limited.truncated) == (["reports", "emails"], True)


def test_task_report__every_task_with_counts_and_oldest_ready_age(queues, jobs):
    jobs.sql(f"INSERT INTO {jobs.q}._private_tasks (identifier) VALUES ('retired_task')")
    jobs.retrying("resize_image", error="MemoryError")
    report = task_report(settings.WORKER_DATABASE)
    assert report.tasks == [
        TaskRow("generate_report", StateCounts(scheduled=1, failed=1), None),
        TaskRow(
            "resize_image", StateCounts(ready=1, scheduled=1, retrying=1), timedelta(minutes=1)
        ),
        TaskRow("retired_task", StateCounts(), None),
        TaskRow("send_email", StateCounts(ready=2, locked=1), timedelta(hours=2)),
    ]


def test_task_report__no_tasks(db):
    assert task_report(settings.WORKER_DATABASE).tasks == []


def test_queues_page__markers_and_links(console, queues):
    response = console.get(reverse("worker_admin:queues"))
    assert response.status_code == 200
    body = response.content.decode()
    text = _text(response)
    assert '<tr class="row-danger">' in body and '<tr class="row-locked">' in body
    assert "Locked, but none of its jobs is" in text and "Held past the 4-hour mark" in text
    assert "Blocks the queue: the other jobs in it wait" in text
    assert "pool-7f3a9c2e1b · 5h" in text and "graphile_worker_aa · 2m" in text
    assert "3 queues · 2 locked · 1 with a suspect lock" in text
    hrefs = re.findall(r'href="(/queues/[^"]+)"', body)  # each queue's own page, in order
    assert hrefs == ["/queues/reports/", "/queues/emails/", "/queues/idle/"]


def test_queues_page__empty_and_filtered_empty(console, db):
    assert "No queues: jobs added without a queue name" in _text(
        console.get(reverse("worker_admin:queues"))
    )
    assert "No queue name contains nothing-like-this." in _text(
        console.get(reverse("worker_admin:queues"), {"name": "nothing-like-this"})
    )


def test_queues_page__htmx_gets_only_the_fragment(console, queues):
    body = console.get(reverse("worker_admin:queues"), headers={"HX-Request": "true"}).content
    assert body.decode().lstrip().startswith('<div id="queue-table"')


@pytest.mark.parametrize(
    "bad", ["'; DROP TABLE jobs; --", "<script>alert(1)</script>", "x" * 10_000]
)
def test_queues_page__hostile_name_filter_is_harmless(console, queues, bad):
    response = console.get(reverse("worker_admin:queues"), {"name": bad})
    assert response.status_code == 200
    assert "<script>alert" not in response.content.decode()
    assert response.context["filters"] == {"name": bad[:128]}


def test_tasks_page__rows_and_links(console, queues):
    response = console.get(reverse("worker_admin:tasks"))
    assert response.status_code == 200
    body = response.content.decode()
    assert re.findall(r'href="(/tasks/[^"]+)"', body) == [  # each task's own page
        "/tasks/generate_report/",
        "/tasks/resize_image/",
        "/tasks/send_email/",
    ]
    assert 'href="/failures/?task=generate_report&state=failed"' in body
    text = _text(response)
    assert "2h" in text and "1m" in text


def test_tasks_page__empty_state_and_fragment(console, db):
    assert "No tasks yet" in _text(console.get(reverse("worker_admin:tasks")))
    body = console.get(reverse("worker_admin:tasks"), headers={"HX-Request": "true"}).content
    assert body.decode().lstrip().startswith('<div id="task-table"')


@pytest.mark.parametrize("url", ["worker_admin:queues", "worker_admin:tasks"])
def test_catalog_pages__login_required(client, db, url):
    response = client.get(reverse(url))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("url", ["worker_admin:queues", "worker_admin:tasks"])
def test_catalog_pages__rls_role_gets_the_sentence_not_data(console, jobs, worker_schema, url):
    jobs.failed(queue_name="emails")
    rls_role_reads(worker_schema)
    response = console.get(reverse(url))
    text = _text(response)
    assert 'Connected role "gw_console_rls" cannot read' in text
    assert "cannot read this schema truthfully" in text
    assert response.context.get("report") is None
