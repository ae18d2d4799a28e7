"""Failures: the error normaliser (Python and SQL alike), grouping, filters and the page."""

import html
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from worker_admin import failures
from worker_admin.failures import (
    DIGITS_TO_ZERO,
    FailureState,
    failure_groups,
    normalise_error,
    normalised_error_expression,
)
from worker_admin.models import Job

# (raw last_error, normalised) as workers write them: Node stacks, Rust and Python reprs.
SAMPLES = [
    (
        "SMTPRecipientsRefused: {'user4821@example.org': (550, b'5.1.1 mailbox unavailable')}",
        "SMTPRecipientsRefused: {'…': (<n>, '…')}",
    ),
    (
        "SMTPRecipientsRefused: {'user17@example.org': (550, b'5.1.1 mailbox unavailable')}",
        "SMTPRecipientsRefused: {'…': (<n>, '…')}",
    ),
    (
        "TypeError: Cannot read properties of undefined (reading 'rows')\n"
        "    at buildSection (/app/tasks/generate_report.js:142:31)\n"
        "    at async Promise.all (index 3)\n"
        "    at async generateReport (/app/tasks/generate_report.js:57:5)",
        "TypeError: Cannot read properties of undefined (reading '…')",
    ),
    (
        "KeyError: 'sku'\n  File \"/app/tasks/inventory.py\", line 88, in sync_inventory\n"
        "    sku = row['sku']",
        "KeyError: '…'",
    ),
    (
        "HTTP 503 Service Unavailable from "
        "https://hooks.customer-12.example.net/events?sig=ab12&ts=1700000000#frag",
        "HTTP <n> Service Unavailable from https://hooks.customer-<n>.example.net/events?…",
    ),
    ("Error: connect ECONNREFUSED 10.0.3.17:5432", "Error: connect ECONNREFUSED <n>:<n>"),
    ("Order 3F2B6C1E-9a4d-4e2b-8f1a-0c9d8e7f6a5b not found", "Order <uuid> not found"),
    (
        "worker pool-7f3a9c2e1b lost the lock of job 88123",
        "worker pool-<id> lost the lock of job <n>",
    ),
    ("Segfault at 0x7ffd5e8c1a20 in libvips", "Segfault at <id> in libvips"),
    ("image 1920x1080 scaled 2x3 from 0XFF", "image <n>x<n> scaled <id> from <id>"),
    ('relation "public.orders_2024" does not exist', 'relation "…" does not exist'),
    ("can't reach user's mailbox 'inbox-9'", "can't reach user's mailbox '…'"),
    ("KeyError: \"it's 'nested'\"", 'KeyError: "…"'),
    ('{"error":"not_found","id":12345}', '{"…":"…","…":<n>}'),
    (
        "CardError: card_declined (insufficient_funds) for customer cus_4821",
        "CardError: card_declined (insufficient_funds) for customer cus_<n>",
    ),
    ("Invalid token 01HF8ZQ4K7M2N3P5R6S7T8V9WX in request", "Invalid token <id> in request"),
    ("hash deadbeefcafe mismatch", "hash deadbeefcafe mismatch"),
    (
        "Deadline exceeded after 1.5s (attempt 3 of 25)",
        "Deadline exceeded after <n>s (attempt <n> of <n>)",
    ),
    ("Payload\ttoo   large:  412876800 bytes  ", "Payload too large: <n> bytes"),
    (
        "S3Error v2: GET https://bob:hunter2@files.example.com/a/b failed; mail ops@example.com",
        "S<n>Error v<n>: GET https://<user>@files.example.com/a/b failed; mail <email>",
    ),
    (
        "  \r\n\n  Error: after blank lines\r\n    at main (index.js:1:1)",
        "Error: after blank lines",
    ),
    (
        "Fehler: Datei «bericht-٣.pdf» fehlt für Kunde 42",
        "Fehler: Datei «bericht-٣.pdf» fehlt für Kunde <n>",
    ),
    ("<script>alert(1)</script>", "<script>alert(<n>)</script>"),
    ("Error: " + "y" * 10_000, ("Error: " + "y" * 10_000)[:500]),
    ("   ", "<no error>"),
    ("", "<no error>"),
    (None, "<no error>"),
]


def _text(response) -> str:
    """The page's visible text: tags dropped, white space folded, entities decoded."""
    without_tags = re.sub(r"<[^>]*>", "", response.content.decode())
    return html.unescape(re.sub(r"\s+", " ", without_tags))


def _summary(report) -> list[tuple]:
    return [(g.task, g.message, g.failed, g.retrying) for g in report.groups]


def test_normalise_error__python_rules(db):
    assert [normalise_error(raw) for raw, _ in SAMPLES] == [expected for _, expected in SAMPLES]


def test_normalise_error__sql_matches_python(jobs):
    ids = [jobs.failed("send_email", error=raw).id for raw, _ in SAMPLES]
    in_sql = dict(
        Job.objects.using(settings.WORKER_DATABASE)
        .filter(id__in=ids)
        .annotate(normalised=normalised_error_expression())
        .values_list("id", "normalised")
    )
    assert [in_sql[job_id] for job_id in ids] == [normalise_error(raw) for raw, _ in SAMPLES]


def test_normalise_error__digits_never_matter(db):
    """The page folds every digit to 0 before normalising; that must change no result."""
    raws = [raw for raw, _ in SAMPLES if raw]
    assert [normalise_error(raw.translate(DIGITS_TO_ZERO)) for raw in raws] == [
        normalise_error(raw) for raw in raws
    ]


def test_failure_groups__sql_messages_match_python(jobs):
    for i, (raw, _) in enumerate(SAMPLES):
        jobs.failed(f"task_{i:02}", error=raw)
    report = failure_groups(settings.WORKER_DATABASE, limit=1000)
    assert sorted((g.task, g.message) for g in report.groups) == [
        (f"task_{i:02}", normalise_error(raw)) for i, (raw, _) in enumerate(SAMPLES)
    ]


def test_normalised_error_expression__filters_a_group_as_the_jobs_list_will(jobs):
    a = jobs.failed(error="Error: connect ECONNREFUSED 10.0.3.17:5432")
    b = jobs.retrying(error="Error: connect ECONNREFUSED 10.0.9.2:6379\n    at TCP")
    jobs.failed(error="Error: connect ETIMEDOUT 10.0.3.17:5432")
    found = (
        Job.objects.using(settings.WORKER_DATABASE)
        .alias(normalised_error=normalised_error_expression())
        .filter(normalised_error="Error: connect ECONNREFUSED <n>:<n>")
        .order_by("id")
        .values_list("id", flat=True)
    )
    assert list(found) == [a.id, b.id]


@pytest.fixture
def failing(jobs):
    """Failed and retrying jobs in three groups, plus jobs that are not failures at all."""
    smtp = "SMTPRecipientsRefused: {{'user{}@example.org': (550, b'5.1.1 mailbox unavailable')}}"
    made = {
        "smtp": [
            jobs.failed("send_email", error=smtp.format(4821)),
            jobs.failed("send_email", error=smtp.format(17)),
            jobs.failed("send_email", error=smtp.format(99)),
            jobs.retrying("send_email", error=smtp.format(5)),
            jobs.retrying("send_email", error=smtp.format(6)),
        ],
        "disconnect": [
            jobs.failed("send_email", error="SMTPServerDisconnected: closed by smtp.example.net"),
        ],
        "card": [jobs.retrying("charge_card", error="CardError: declined for customer cus_1")],
    }
    for hours, job in zip((5, 1, 3, 2, 4), made["smtp"], strict=True):
        jobs.set(job, updated_at=f"now() - interval '{hours} hours'")
    jobs.set(made["disconnect"][0], updated_at="now() - interval '30 minutes'")
    jobs.set(made["card"][0], updated_at="now() - interval '10 minutes'")
    jobs.ready("send_email")
    jobs.scheduled("send_email")
    running = jobs.locked()
    jobs.set(running, last_error="'SMTPServerDisconnected: an earlier attempt'")
    return made


def test_failure_groups__grouped_by_task_and_normalised_error(failing):
    report = failure_groups(settings.WORKER_DATABASE)
    assert _summary(report) == [
        ("send_email", "SMTPRecipientsRefused: {'…': (<n>, '…')}", 3, 2),
        ("charge_card", "CardError: declined for customer cus_<n>", 0, 1),
        ("send_email", "SMTPServerDisconnected: closed by smtp.example.net", 1, 0),
    ]
    assert (report.failed, report.retrying, report.truncated) == (4, 3, False)


def test_failure_groups__first_and_last_seen_and_example(failing):
    group = failure_groups(settings.WORKER_DATABASE).groups[0]
    now = failure_groups(settings.WORKER_DATABASE).now
    newest = max(failing["smtp"], key=lambda job: job.id)
    assert (group.first_seen, group.last_seen) == (
        now - timedelta(hours=5),
        now - timedelta(hours=1),
    )
    assert (group.example_job_id, group.example_error, group.example_truncated) == (
        newest.id,
        newest.last_error,
        False,
    )


def test_failure_groups__filters(failing):
    alias = settings.WORKER_DATABASE
    assert _summary(failure_groups(alias, state=FailureState.FAILED)) == [
        ("send_email", "SMTPRecipientsRefused: {'…': (<n>, '…')}", 3, 0),
        ("send_email", "SMTPServerDisconnected: closed by smtp.example.net", 1, 0),
    ]
    assert _summary(failure_groups(alias, state=FailureState.RETRYING)) == [
        ("send_email", "SMTPRecipientsRefused: {'…': (<n>, '…')}", 0, 2),
        ("charge_card", "CardError: declined for customer cus_<n>", 0, 1),
    ]
    assert _summary(failure_groups(alias, task="charge_card")) == [
        ("charge_card", "CardError: declined for customer cus_<n>", 0, 1),
    ]
    assert _summary(failure_groups(alias, task="no_such_task")) == []


def test_failure_groups__limit_keeps_the_largest(failing):
    report = failure_groups(settings.WORKER_DATABASE, limit=1)
    assert [g.total for g in report.groups] == [5]
    assert report.truncated is True


def test_failures_page__statement_timeout_says_so(console, failing, monkeypatch):
    monkeypatch.setattr(failures, "_grouped_sql", lambda jobs, alias: ("SELECT pg_sleep(%s)", []))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '200ms'")
    response = console.get(reverse("worker_admin:failures"))
    assert response.status_code == 200
    assert "took longer than the console's statement timeout" in _text(response)
    assert response.context.get("report") is None and response.context["too_slow"] is True


def test_failure_state__parse_falls_back_to_both(db):
    assert [FailureState.parse(v) for v in ("failed", "retrying", "both", "", "FAILED", "x")] == [
        FailureState.FAILED,
        FailureState.RETRYING,
        FailureState.BOTH,
        FailureState.BOTH,
        FailureState.BOTH,
        FailureState.BOTH,
    ]


def test_failures_page__rows_and_links_to_the_jobs_list(console, failing):
    response = console.get(reverse("worker_admin:failures"))
    assert response.status_code == 200
    assert _summary(response.context["report"]) == _summary(
        failure_groups(settings.WORKER_DATABASE)
    )
    links = [
        parse_qs(urlsplit(html.unescape(href)).query)
        for href in re.findall(r'class="failure-message" href="([^"]+)"', response.content.decode())
    ]
    assert links == [
        {
            "state": ["failed"],
            "task": ["send_email"],
            "error": ["SMTPRecipientsRefused: {'…': (<n>, '…')}"],
        },
        {
            "state": ["retrying"],
            "task": ["charge_card"],
            "error": ["CardError: declined for customer cus_<n>"],
        },
        {
            "state": ["failed"],
            "task": ["send_email"],
            "error": ["SMTPServerDisconnected: closed by smtp.example.net"],
        },
    ]
    text = _text(response)
    assert "3 groups · 4 failed · 3 retrying" in text
    assert "Example from job" in text and "5h ago" in text and "1h ago" in text


def test_failures_page__query_string_filters(console, failing):
    response = console.get(
        reverse("worker_admin:failures"), {"task": "send_email", "state": "retrying"}
    )
    assert _summary(response.context["report"]) == [
        ("send_email", "SMTPRecipientsRefused: {'…': (<n>, '…')}", 0, 2),
    ]
    assert response.context["filters"] == {"task": "send_email", "state": "retrying"}


def test_failures_page__empty_state(console, jobs):
    jobs.ready()
    text = _text(console.get(reverse("worker_admin:failures")))
    assert "No failed or retrying jobs: nothing is failing right now." in text


def test_failures_page__empty_state_with_filters(console, failing):
    response = console.get(
        reverse("worker_admin:failures"), {"task": "charge_card", "state": "failed"}
    )
    assert "No failed jobs for task charge_card." in _text(response)


def test_failures_page__htmx_gets_only_the_fragment(console, failing):
    response = console.get(reverse("worker_admin:failures"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="failure-groups"')
    assert "<html" not in body and 'hx-trigger="every' in body


def test_failures_page__login_required(client, db):
    response = client.get(reverse("worker_admin:failures"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    "bad",
    [
        "'; DROP TABLE jobs; --",
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "%' OR 1=1 --",
        "x" * 10_000,
    ],
)
def test_failures_page__hostile_query_values_are_harmless(console, jobs, bad):
    jobs.failed(error="<script>alert(1)</script>")
    response = console.get(reverse("worker_admin:failures"), {"task": bad, "state": bad})
    body = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in body and "<img src=x" not in body
    assert response.context["filters"] == {"task": bad.strip()[:128], "state": "both"}


def test_failures_page__error_text_is_escaped(console, jobs):
    jobs.failed(error="<script>alert(1)</script>")
    body = console.get(reverse("worker_admin:failures")).content.decode()
    assert "&lt;script&gt;alert(&lt;n&gt;)&lt;/script&gt;" in body
    assert "<script>alert" not in body


def rls_role_reads(worker_schema: str) -> None:
    """Switch this transaction to a role that row-level security hides every job from."""
    with connection.cursor() as cursor:
        cursor.execute("DROP ROLE IF EXISTS gw_console_rls")
        cursor.execute("CREATE ROLE gw_console_rls NOLOGIN NOBYPASSRLS")
        cursor.execute(f"GRANT USAGE ON SCHEMA {worker_schema}, graphile_console TO gw_console_rls")
        cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {worker_schema} TO gw_console_rls")
        cursor.execute("GRANT SELECT ON ALL TABLES IN SCHEMA graphile_console TO gw_console_rls")
        cursor.execute("SET LOCAL ROLE gw_console_rls")


def test_failures_page__rls_role_gets_the_sentence_not_data(console, jobs, worker_schema):
    jobs.failed()
    rls_role_reads(worker_schema)
    response = console.get(reverse("worker_admin:failures"))
    text = _text(response)
    assert 'Connected role "gw_console_rls" cannot read' in text
    assert "cannot read this schema truthfully" in text
    assert response.context.get("report") is None
