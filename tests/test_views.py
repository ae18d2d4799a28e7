"""Pages through Django's test client: login, overview, jobs, job detail, fragments."""

import html
import re

import pytest
from django.urls import reverse


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.content.decode()))


@pytest.mark.parametrize(
    "url",
    ["worker_admin:overview", "worker_admin:jobs", "worker_admin:workers", "worker_admin:audit"],
)
def test_pages__login_required(client, db, url):
    response = client.get(reverse(url))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login__wrong_password_says_so(client, operator):
    response = client.post(reverse("login"), {"username": "oncall", "password": "nope"})
    assert response.status_code == 200
    assert "do not match" in _text(response)


def test_login__then_overview(client, operator):
    response = client.post(
        reverse("login"), {"username": "oncall", "password": "correct horse battery"}, follow=True
    )
    assert response.redirect_chain[-1][0] == reverse("worker_admin:overview")
    assert "Overview" in _text(response)


def test_overview__counts_per_state_task_and_queue(console, jobs):
    jobs.ready("send_email", queue_name="emails")
    jobs.ready("send_email")
    jobs.scheduled("report")
    jobs.locked(by="graphile_worker_aa")
    jobs.failed("charge_card", queue_name="payments")
    response = console.get(reverse("worker_admin:overview"))
    assert response.status_code == 200
    stats = response.context["stats"]
    assert (
        stats.counts.ready,
        stats.counts.scheduled,
        stats.counts.locked,
        stats.counts.failed,
    ) == (
        2,
        1,
        1,
        1,
    )
    by_task = {row.name: row.counts for row in stats.by_task}
    assert by_task["send_email"].ready == 2 and by_task["send_email"].locked == 1
    assert by_task["charge_card"].failed == 1
    assert {row.name for row in stats.by_queue} == {"emails", "payments"}
    assert stats.oldest_ready_age.total_seconds() >= 60
    text = _text(response)
    assert "Oldest ready job waiting" in text and "rust-recovery" in text


def test_overview__htmx_gets_only_the_fragment(console, jobs):
    jobs.ready()
    response = console.get(reverse("worker_admin:overview"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="overview-body"')
    assert "<html" not in body


def test_overview__empty_queue_says_so(console, db):
    assert "an empty queue is a healthy one" in _text(console.get(reverse("worker_admin:overview")))


def test_overview__rls_role_gets_the_sentence_not_zeros(console, jobs, worker_schema):
    from django.db import connection

    jobs.ready()
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS gw_console_rls")
        cursor.execute("CREATE ROLE gw_console_rls NOLOGIN NOBYPASSRLS")
        cursor.execute(f"GRANT USAGE ON SCHEMA {worker_schema}, graphile_console TO gw_console_rls")
        cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {worker_schema} TO gw_console_rls")
        cursor.execute("GRANT SELECT ON ALL TABLES IN SCHEMA graphile_console TO gw_console_rls")
        cursor.execute("SET LOCAL ROLE gw_console_rls")
    response = console.get(reverse("worker_admin:overview"))
    text = _text(response)
    assert 'Connected role "gw_console_rls" cannot read' in text
    assert "stats" not in response.context or response.context.get("stats") is None


def test_job_detail__every_column(console, jobs):
    job = jobs.add(
        "send_email", {"to": "<b>x</b>"}, queue_name="emails", job_key="key-1", flags=["f1"]
    )
    job = jobs.locked()
    text = _text(console.get(reverse("worker_admin:job_detail", args=[job.id])))
    assert f"Job {job.id}" in text and "graphile_worker_abc123" in text
    assert "Console actions skip it" in text
    keyed = jobs.add(
        "send_email", {"to": "<b>x</b>"}, queue_name="emails", job_key="key-2", flags=["f1"]
    )
    text = _text(console.get(reverse("worker_admin:job_detail", args=[keyed.id])))
    assert "key-2" in text and "f1" in text and "emails" in text
    assert "&lt;b&gt;x&lt;/b&gt;" in response_html(console, keyed.id)


def test_job_detail__lock_near_four_hours_warns(console, jobs):
    job = jobs.locked(age="3 hours 30 minutes")
    text = _text(console.get(reverse("worker_admin:job_detail", args=[job.id])))
    assert "nearing the 4-hour mark" in text


def test_job_detail__unknown_id_is_a_clear_404(console, db):
    response = console.get(reverse("worker_admin:job_detail", args=[987654321]))
    assert response.status_code == 404
    assert "completed jobs are deleted" in _text(response)


def response_html(console, job_id: int) -> str:
    return console.get(reverse("worker_admin:job_detail", args=[job_id])).content.decode()


def test_job_detail__large_payload_note(console, jobs):
    job = jobs.add("bulk", {"blob": "x" * 70_000})
    text = _text(console.get(reverse("worker_admin:job_detail", args=[job.id])))
    assert "A large payload" in text


def test_job_detail__lock_past_four_hours_is_explained(console, jobs):
    job = jobs.locked(age="5 hours")
    text = _text(console.get(reverse("worker_admin:job_detail", args=[job.id])))
    assert "past the 4-hour mark" in text


def test_overview__large_table_counts_are_sampled_estimates(console, utils, jobs, monkeypatch):
    """Above the exact limit the overview reads random id blocks and scales; it says so."""
    from worker_admin import stats
    from worker_admin.utils import RawJobSpec

    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(400)])
    jobs.sql("ANALYZE graphile_worker._private_jobs")
    failed = jobs.failed("t")
    monkeypatch.setattr(stats, "EXACT_ROW_LIMIT", 100)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", 200)
    monkeypatch.setattr(stats, "SAMPLE_WINDOWS", 10)
    response = console.get(reverse("worker_admin:overview"))
    result = response.context["stats"]
    assert not result.exact and 0 < result.sampled_fraction < 1
    assert 300 <= result.counts.total <= 500  # scaled back to the table's size
    assert result.oldest_ready_at is not None  # exact, through the index walk
    text = _text(response)
    assert "estimated from a random" in text and "95 % error" in text
    assert failed.id  # the sample may or may not include it; the page never claims exactness


def test_oldest_ready_at__exact_across_priorities(jobs, utils):
    from worker_admin.stats import oldest_ready_at

    jobs.set(jobs.ready(priority=5), run_at="now() - interval '2 hours'")
    jobs.set(jobs.ready(priority=-3), run_at="now() - interval '30 minutes'")
    jobs.set(jobs.scheduled(priority=-9), run_at="now() + interval '1 hour'")
    jobs.set(jobs.locked(), run_at="now() - interval '9 hours'")  # locked: not ready
    oldest = oldest_ready_at(utils.alias)
    (expected,) = jobs.sql("SELECT now() - interval '2 hours'")[0]
    assert oldest == expected


def test_500_page_is_self_contained_and_csp_clean():
    """Django renders 500.html with no request and no database: it must still be styled under
    the Content-Security-Policy (no inline style or script) and not claim more than it knows."""
    from django.template.loader import render_to_string

    html = render_to_string("500.html")
    assert 'rel="stylesheet"' in html and "worker_admin/console.css" in html
    assert "style=" not in html and "<script" not in html
    assert "Something went wrong" in html and "/audit/" in html
