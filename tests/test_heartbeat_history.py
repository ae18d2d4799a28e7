"""Heartbeat history (issue 16): the recorder keeps registered workers' heartbeat ages on its
counts rounds (the most recent HISTORY_HEARTBEAT_WORKERS), retention keeps them at a minute's
resolution, and the worker page charts them with gaps; a Node schema says it has none."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse

from tests.test_workers_page import _register
from worker_admin.history import recorder, retention, series
from worker_admin.history.entity_series import read_heartbeats
from worker_admin.history.models import HOUR, MINUTE, HistorySnapshot

SCHEMA = "graphile_worker"


def _record():
    outcome = recorder.record_if_due(interval=0.001)
    assert outcome.reason == "recorded", outcome
    return outcome.snapshot


def test_record__heartbeat_ages_of_registered_workers(db, jobs):
    _register(jobs, "graphile_worker_aa", "42 seconds")
    _register(jobs, "graphile_worker_bb", "7 minutes")
    beats = _record().heartbeats
    assert set(beats) == {"graphile_worker_aa", "graphile_worker_bb"}
    assert 42 <= beats["graphile_worker_aa"] < 60
    assert 420 <= beats["graphile_worker_bb"] < 440


@override_settings(HISTORY_HEARTBEAT_WORKERS=2)
def test_record__bounded_to_the_most_recent_heartbeats_and_the_rest_is_unknown(db, jobs):
    for n, age in enumerate(("1 minute", "2 minutes", "3 minutes")):
        _register(jobs, f"graphile_worker_{n}", age)
    snapshot = _record()
    assert set(snapshot.heartbeats) == {"graphile_worker_0", "graphile_worker_1"}
    assert snapshot.registered_workers == 3
    # Left out by the bound: unknown (a gap), not "not registered".
    left_out = read_heartbeats("graphile_worker_2", series.RANGES["1h"])
    assert set(left_out.registered) == {None}
    kept = read_heartbeats("graphile_worker_0", series.RANGES["1h"])
    assert True in kept.registered


def test_record__not_registered_then_is_recorded_as_such(db, jobs):
    _register(jobs, "graphile_worker_aa", "10 seconds")
    _record()
    gone = read_heartbeats("graphile_worker_gone", series.RANGES["1h"])
    assert False in gone.registered and True not in gone.registered
    assert all(age is None for age in gone.ages)


def test_record__only_on_counts_rounds(db, jobs):
    _register(jobs, "graphile_worker_aa", "10 seconds")
    assert _record().heartbeats is not None
    assert _record().heartbeats is None  # the counts were taken less than a minute ago


def _seed_heartbeats(worker_id: str) -> None:
    """A snapshot a minute for 50 minutes, none between 20 and 30 minutes ago."""
    now = retention._now()
    for minutes_ago in range(50, 0, -1):
        if 20 <= minutes_ago <= 30:
            continue
        HistorySnapshot.objects.create(
            schema=SCHEMA,
            taken_at=now - timedelta(minutes=minutes_ago),
            registered_workers=1,
            heartbeats={worker_id: float(minutes_ago % 3) * 10},
        )


@pytest.fixture
def admin_client(login_as):
    return login_as("admin", "adele")


def test_worker_page__heartbeat_chart_with_a_gap_and_a_table(admin_client, jobs):
    _register(jobs, "graphile_worker_aa", "5 seconds")
    _seed_heartbeats("graphile_worker_aa")
    response = admin_client.get(reverse("worker_admin:worker", args=["graphile_worker_aa"]))
    assert response.status_code == 200
    body = response.content.decode()
    chart = body.split('id="chart-heartbeat"')[1].split("</svg>")[0]
    heartbeat = chart.split('class="series series-heartbeat"')[1].split("</g>")[0]
    assert heartbeat.count('<path d="M') == 2  # one line each side of the gap
    table = body.split('id="chart-heartbeat"')[1].split("</table>")[0]
    assert "—" in table and "Stale after" in table
    assert '?threshold=5&amp;range=24h"' in body
    day = admin_client.get(
        reverse("worker_admin:worker", args=["graphile_worker_aa"]), {"range": "24h"}
    )
    assert 'range=24h" aria-current="page"' in day.content.decode()
    week = admin_client.get(
        reverse("worker_admin:worker", args=["graphile_worker_aa"]), {"range": "7d"}
    )
    assert week.context["heartbeats"].range.key == "1h"  # only an hour or a day is offered


def test_worker_page__nothing_recorded_says_so(admin_client, jobs):
    _register(jobs, "graphile_worker_aa", "5 seconds")
    response = admin_client.get(reverse("worker_admin:worker", args=["graphile_worker_aa"]))
    assert "Nothing recorded for this worker in the last 1 hour" in response.content.decode()


def test_worker_page__node_schema_has_no_worker_registrations(admin_client, jobs):
    # A Node-migrated schema has no _private_workers; dropped here inside the test's
    # transaction (rolled back after it), so the console's models keep their schema.
    jobs.sql("DROP TABLE graphile_worker._private_workers CASCADE")
    job = jobs.ready("send_email")
    jobs.set(job, locked_by="'pool-1a2b'", locked_at="now()")
    assert _record().heartbeats is None
    response = admin_client.get(reverse("worker_admin:worker", args=["pool-1a2b"]))
    assert response.status_code == 200
    assert (
        "No heartbeat history: this schema has no worker registrations" in response.content.decode()
    )
    assert 'id="chart-heartbeat"' not in response.content.decode()


def test_retention__heartbeats_kept_per_minute_and_dropped_from_hourly_rows(db):
    now = retention._now()
    # Inside one minute, and one hour: the three rows fold into one row each.
    minute = (now - timedelta(days=2)).replace(second=30, microsecond=0)
    hour = (now - timedelta(days=9)).replace(minute=30, second=30, microsecond=0)
    for seconds in (0, 10, 20):
        HistorySnapshot.objects.create(
            schema=SCHEMA,
            taken_at=minute - timedelta(seconds=seconds),
            heartbeats={"graphile_worker_aa": float(seconds)},
            group_states={"tasks": {}, "queues": {}, "all_tasks": True, "all_queues": True},
        )
        HistorySnapshot.objects.create(
            schema=SCHEMA,
            taken_at=hour - timedelta(seconds=seconds),
            heartbeats={"graphile_worker_aa": float(seconds)},
        )
    retention.apply(SCHEMA, now)
    folded = HistorySnapshot.objects.get(resolution=MINUTE)
    assert folded.heartbeats == {"graphile_worker_aa": 0.0}  # the last one taken
    assert folded.group_states["all_tasks"] is True
    assert HistorySnapshot.objects.get(resolution=HOUR).heartbeats is None
