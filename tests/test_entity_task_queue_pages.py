"""One page per task and per queue (issue 16): its jobs by state now, counted as the tasks and
queues pages count them, a queue's lock against the 4-hour mark, the per-state history the
recorder keeps for the largest tasks and queues, charts with their tables, and 404s."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils.html import escape

from worker_admin.history import recorder, retention, series
from worker_admin.history.entity_series import read_group
from worker_admin.history.models import HistorySnapshot
from worker_admin.views.entities import entity_path

SCHEMA = "graphile_worker"


def _text(response) -> str:
    without_tags = re.sub(r"<[^>]+>", " ", response.content.decode())
    return html.unescape(re.sub(r"\s+", " ", without_tags))


def _record():
    outcome = recorder.record_if_due(interval=0.001)
    assert outcome.reason == "recorded", outcome
    return outcome.snapshot


def _seed(jobs, identifier="send_email", queue_name=None) -> dict:
    """Jobs of one task in every state; returns the truth by state."""
    spec = {"queue_name": queue_name} if queue_name else {}
    for _ in range(3):
        jobs.ready(identifier, **spec)
    for _ in range(2):
        jobs.scheduled(identifier, **spec)
    jobs.retrying(identifier, **spec)  # scheduled too
    jobs.failed(identifier, **spec)
    locked = jobs.ready(identifier, **spec)
    jobs.set(locked, locked_by="'graphile_worker_ab'", locked_at="now()", attempts="1")
    return {"ready": 3, "scheduled": 3, "locked": 1, "failed": 1, "retrying": 1}


def test_task_page__counts_match_the_truth_with_links_charts_and_tables(console, jobs):
    truth = _seed(jobs, "send_email")
    _seed(jobs, "charge_card")  # another task's jobs are not counted
    jobs.ready("send_email")
    truth["ready"] += 1
    _record()
    response = console.get(reverse("worker_admin:task", args=["send_email"]))
    assert response.status_code == 200
    row = response.context["row"]
    counts = {state: getattr(row.counts, state) for state in truth}
    assert counts == truth
    assert row.oldest_ready_age >= timedelta(seconds=59)  # the factory's run_at: a minute ago
    body = response.content.decode()
    for state in ("ready", "scheduled", "locked", "failed", "retrying"):
        assert f'href="/jobs/?task=send_email&amp;state={state}"' in body
    assert body.count('<svg class="chart"') == 2
    assert body.count('<table class="data compact">') == 2
    assert 'id="chart-backlog"' in body and 'id="chart-wait"' in body
    # The recorded round is the chart's last bucket, with the same counts.
    last = [b for b in response.context["history"].buckets if b.counts][-1]
    assert last.counts == {k: truth[k] for k in ("ready", "scheduled", "locked", "failed")}
    assert "recorded for the whole schema only" in _text(response)


def test_queue_page__counts_lock_holder_and_age_past_the_four_hour_mark(console, jobs):
    truth = _seed(jobs, "send_email", queue_name="emails")
    jobs.sql(
        "UPDATE graphile_worker._private_job_queues SET locked_by = 'graphile_worker_ab', "
        "locked_at = now() - interval '5 hours' WHERE queue_name = 'emails'"
    )
    response = console.get(reverse("worker_admin:queue", args=["emails"]))
    assert response.status_code == 200
    row = response.context["row"]
    assert {s: getattr(row.counts, s) for s in truth} == truth
    text = _text(response)
    assert "held by graphile_worker_ab" in text and "5h" in text
    assert "past the 4-hour mark" in text
    assert 'href="/workers/graphile_worker_ab/"' in response.content.decode()
    jobs.sql("UPDATE graphile_worker._private_job_queues SET locked_at = now() - interval '3 m'")
    text = _text(console.get(reverse("worker_admin:queue", args=["emails"])))
    assert "under the 4-hour mark" in text and "past the 4-hour mark" not in text


@pytest.mark.parametrize(
    "path, sentence",
    [
        ("/tasks/no_such_task/", "No task “no_such_task” is known to this schema"),
        ("/queues/no_such_queue/", "No queue “no_such_queue” exists in this schema"),
        ("/tasks/" + "x" * 129 + "/", "longer than 128 characters"),
        ("/queues/a%00b/", "holds a NUL"),
    ],
)
def test_entity_pages__unknown_task_or_queue_is_a_404_with_a_sentence(console, db, path, sentence):
    response = console.get(path)
    assert response.status_code == 404
    assert sentence in _text(response)


WEIRD = [
    "reports/daily/../weekly",
    "<script>alert('x')</script>",
    "say \"hi\" & 'bye'",
    "spaces and ünïcödé ✓",
    "trailing/",
    "50%?#frag",
]


@pytest.mark.parametrize("name", WEIRD)
def test_entity_pages__weird_names_link_round_trip_and_render_escaped(console, jobs, name):
    jobs.ready(name, queue_name=name)
    for kind, listing in (("task", "/tasks/"), ("queue", "/queues/")):
        url = entity_path(kind, name)
        # One path segment: a browser cannot read "daily/../weekly" as segments to resolve.
        assert url.count("/") == 3 and url.startswith(listing)
        assert f'href="{url}"' in console.get(listing).content.decode()  # the row links here
        response = console.get(url)
        assert response.status_code == 200, (kind, name, url)
        assert response.context["name"] == name
        body = response.content.decode()
        assert "<script>alert" not in body
        assert escape(name) in body  # as Django escapes it


def test_entity_pages__overview_rows_link_to_them(console, jobs):
    jobs.ready("send_email", queue_name="emails")
    body = console.get("/").content.decode()
    assert 'href="/tasks/send_email/"' in body and 'href="/queues/emails/"' in body


def _snapshot(at, group_states) -> None:
    HistorySnapshot.objects.create(
        schema=SCHEMA, taken_at=at, interval_seconds=60, counts={}, group_states=group_states
    )


def _states(ready: int, wait: float | None = None) -> dict:
    return {"ready": ready, "scheduled": 0, "locked": 0, "failed": 0, "wait": wait}


def test_group_history__gaps_zeros_and_groups_left_out(db):
    now = retention._now()
    for minutes_ago in range(40, 0, -1):
        if 20 <= minutes_ago <= 30:
            continue  # the recorder was stopped: a gap
        at = now - timedelta(minutes=minutes_ago)
        if minutes_ago > 35:  # every task with jobs recorded, send_email not among them: zero
            _snapshot(at, {"tasks": {"other": _states(1)}, "queues": {}, "all_tasks": True})
        elif minutes_ago > 31:  # only the largest recorded, not send_email: unknown
            _snapshot(at, {"tasks": {"other": _states(9)}, "queues": {}, "all_tasks": False})
        else:
            _snapshot(at, {"tasks": {"send_email": _states(7, 120.0)}, "queues": {}})
    history = read_group("task", "send_email", series.RANGES["1h"])
    ready = [b.counts and b.counts["ready"] for b in history.buckets]
    assert ready[-40:-35].count(0) >= 4  # zeros: every task was recorded
    assert ready[-30:-20].count(None) >= 9  # the stopped recorder
    assert set(ready[-19:]) == {7}
    assert [b.wait for b in history.buckets if b.wait is not None][-1] == 120.0
    assert None in ready[-35:-31]  # left out of a round that kept only the largest


@pytest.mark.parametrize("range_key", ["1h", "24h", "7d", "bogus"])
def test_entity_pages__every_range_renders(console, jobs, range_key):
    jobs.ready("send_email", queue_name="emails")
    _record()
    for url in ("/tasks/send_email/", "/queues/emails/"):
        response = console.get(url, {"range": range_key})
        assert response.status_code == 200
        expected = range_key if range_key in series.RANGES else "1h"
        assert f'?range={expected}" aria-current="page"' in response.content.decode()


def test_entity_pages__nothing_recorded_says_so_and_writes_are_refused(console, jobs):
    jobs.ready("send_email", queue_name="emails")
    text = _text(console.get("/tasks/send_email/"))
    assert "Nothing recorded for this task in the last 1 hour" in text
    assert console.post("/tasks/send_email/").status_code == 405
    assert console.post("/queues/emails/").status_code == 405


def test_entity_pages__htmx_poll_gets_only_the_live_part(console, jobs):
    jobs.ready("send_email")
    body = console.get(
        "/tasks/send_email/", headers={"HX-Request": "true", "HX-Target": "entity-body"}
    ).content.decode()
    assert body.lstrip().startswith('<div id="entity-body"') and "<svg" not in body


@override_settings(HISTORY_TOP_GROUPS=1)
def test_record__group_states_hold_the_largest_by_state_and_whether_all_are_there(console, jobs):
    truth = _seed(jobs, "big", queue_name="q")
    jobs.ready("small")
    snapshot = _record()
    states = snapshot.group_states
    assert set(states["tasks"]) == {"big"} and states["all_tasks"] is False
    assert states["queues"]["q"]["ready"] == truth["ready"]
    assert {k: states["tasks"]["big"][k] for k in ("ready", "scheduled", "locked", "failed")} == {
        k: truth[k] for k in ("ready", "scheduled", "locked", "failed")
    }
    assert states["tasks"]["big"]["wait"] >= 59
    assert states["all_queues"] is True
