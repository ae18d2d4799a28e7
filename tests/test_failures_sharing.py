"""The failures page watched by many (#15): one grouping per interval for every viewer and
process, keyed by everything that changes the answer; 304 for a poll of unchanged groups; the
example error sent as an excerpt, the job's page holding the rest."""

from __future__ import annotations

import pickle
import re

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from worker_admin import failures, snapshots
from worker_admin.views import failures as failures_view

HTMX = {"HX-Request": "true"}
JOBS = '."_private_jobs"'  # a read of the jobs table (not the catalog's row estimate)


@pytest.fixture
def sharing(settings, transactional_db):
    settings.SHARED_SNAPSHOT_SECONDS = 60
    caches[snapshots.CACHE].clear()
    yield settings
    caches[snapshots.CACHE].clear()


def _get(client, params=None, **headers):
    """The response and the statements that read the jobs table for it."""
    with CaptureQueriesContext(connection) as seen:
        response = client.get(reverse("worker_admin:failures"), params or {}, headers=headers)
    return response, [q["sql"] for q in seen.captured_queries if JOBS in q["sql"]]


def test_two_viewers_within_the_interval__one_grouping(sharing, console, worker_rows, jobs):
    from django.test import Client

    jobs.failed(error="timeout after 30s")
    first, read = _get(console)
    assert first.status_code == 200 and read, "the first request groups the failures"
    other = Client()
    other.force_login(_second_user())
    second, read_again = _get(other)
    assert second.status_code == 200 and read_again == []
    assert first.context["report"] == second.context["report"]
    assert "timeout after &lt;n&gt;s" in second.content.decode()


def _second_user():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("second_viewer", password="pw-123456789")


def test_a_filter_is_never_served_another_filters_snapshot(sharing, console, worker_rows, jobs):
    jobs.failed("send_email", error="mailbox full")
    jobs.retrying("charge_card", error="card declined")
    everything, _ = _get(console)
    assert {g.task for g in everything.context["report"].groups} == {"send_email", "charge_card"}
    for params, tasks in [
        ({"state": "failed"}, {"send_email"}),
        ({"state": "retrying"}, {"charge_card"}),
        ({"task": "charge_card"}, {"charge_card"}),
        ({"task": "send_email", "state": "retrying"}, set()),
    ]:
        response, read = _get(console, params)
        assert read, f"{params} took its own snapshot"
        assert {g.task for g in response.context["report"].groups} == tasks, params


def test_the_snapshot_key_names_database_alias_schema_task_and_state(sharing, monkeypatch):
    names = []
    monkeypatch.setattr(
        snapshots, "shared", lambda name, compute, seconds: names.append(name) or None
    )
    state = failures.FailureState
    alias, schema = sharing.WORKER_DATABASE, sharing.GRAPHILE_WORKER_SCHEMA
    failures_view.shared_report(alias, schema, task="", state=state.BOTH)
    failures_view.shared_report("replica", schema, task="", state=state.BOTH)
    failures_view.shared_report(alias, "other_schema", task="", state=state.BOTH)
    failures_view.shared_report(alias, schema, task="a", state=state.BOTH)
    failures_view.shared_report(alias, schema, task="", state=state.FAILED)
    assert len(set(names)) == 5
    assert all(sharing.GRAPHILE_WORKER_NAME in name for name in names)


def test_an_unchanged_poll__304_without_grouping(sharing, console, worker_rows, jobs):
    jobs.failed(error="timeout after 30s")
    first, _ = _get(console, **HTMX)
    assert first.status_code == 200 and first["ETag"]
    assert 'class="as-of"' in first.content.decode()
    again, read = _get(console, **HTMX, **{"If-None-Match": first["ETag"]})
    assert again.status_code == 304 and again["ETag"] == first["ETag"] and read == []


def test_a_new_snapshot_of_the_same_groups__still_304(
    sharing, console, worker_rows, jobs, monkeypatch
):
    # Every poll groups afresh (a new database clock, so new "ago"s); the groups are the same,
    # so the ETag is too, for up to AGES_KEPT_SECONDS (here longer than the test).
    monkeypatch.setattr(failures_view, "AGES_KEPT_SECONDS", 3600 * 24 * 365)
    sharing.SHARED_SNAPSHOT_SECONDS = 0
    jobs.failed(error="timeout after 30s")
    first, _ = _get(console, **HTMX)
    again, read = _get(console, **HTMX, **{"If-None-Match": first["ETag"]})
    assert read and again.status_code == 304 and again["ETag"] == first["ETag"]


def test_the_same_groups_a_minute_later__new_ages_sent(
    sharing, console, worker_rows, jobs, monkeypatch
):
    # "last seen 1s ago" must not stay on a quiet tab for an hour: past AGES_KEPT_SECONDS the
    # same groups get a new ETag, and the tab their ages as of now.
    jobs.failed(error="timeout after 30s")
    first, _ = _get(console, **HTMX)
    monkeypatch.setattr(failures_view, "AGES_KEPT_SECONDS", 0.000_001)  # every instant is new
    sharing.SHARED_SNAPSHOT_SECONDS = 0
    later, _ = _get(console, **HTMX, **{"If-None-Match": first["ETag"]})
    assert later.status_code == 200 and later["ETag"] != first["ETag"]


def test_a_new_failure_is_seen_once_the_snapshot_is_renewed(sharing, console, worker_rows, jobs):
    jobs.failed(error="timeout after 30s")
    first, _ = _get(console, **HTMX)
    jobs.failed(error="connection refused")
    cached, _ = _get(console, **HTMX, **{"If-None-Match": first["ETag"]})
    assert cached.status_code == 304  # within the interval: the shared snapshot
    sharing.SHARED_SNAPSHOT_SECONDS = 0  # the interval has passed
    renewed, _ = _get(console, **HTMX, **{"If-None-Match": first["ETag"]})
    assert renewed.status_code == 200 and renewed["ETag"] != first["ETag"]
    assert b"connection refused" in renewed.content


def test_the_polled_part_holds_no_csrf_token_the_page_holds_one(
    sharing, login_as, worker_rows, jobs
):
    jobs.failed(error="timeout after 30s")
    operator = login_as("operator", "op")
    page, _ = _get(operator)
    part, _ = _get(operator, **HTMX)
    form = re.search(r'<form id="group-action".*?</form>', page.content.decode(), re.S)
    assert form and "csrfmiddlewaretoken" in form.group(0)
    assert 'form="group-action"' in part.content.decode()
    assert b"csrfmiddlewaretoken" not in part.content  # so one rendering serves every operator


def test_the_too_slow_answer_is_shared_too(sharing, console, worker_rows, jobs, monkeypatch):
    calls = []

    def too_slow(*args, **kwargs):
        calls.append(args)
        raise failures.FailureGroupingTooSlow("slow")

    monkeypatch.setattr(failures, "failure_groups", too_slow)
    first, _ = _get(console)
    second, _ = _get(console)
    assert first.context["too_slow"] is second.context["too_slow"] is True
    assert len(calls) == 1


LONG = "Error: the first line\n" + "    at frame (/app/x.js:1:1)\n" * 400  # ~12,000 characters


def test_the_example_is_an_excerpt_with_a_link_to_the_whole_error(console, jobs):
    job = jobs.failed(error=LONG)
    response = console.get(reverse("worker_admin:failures"))
    body = response.content.decode()
    group = response.context["report"].groups[0]
    assert group.example_error == LONG[: failures.EXCERPT_LENGTH]
    assert group.example_truncated is True
    assert (
        LONG[: failures.EXCERPT_LENGTH] in body and LONG[: failures.EXCERPT_LENGTH + 50] not in body
    )
    assert f'<a href="/jobs/{job.id}/">job {job.id}</a> has all of it.' in body
    assert len(body) < 30_000
    # The job's page and the API keep the whole error (up to EXAMPLE_LENGTH for the API).
    assert "frame (/app/x.js:1:1)" in console.get(f"/jobs/{job.id}/").content.decode()
    whole = failures.failure_groups(settings.WORKER_DATABASE).groups[0]
    assert whole.example_error == LONG[: failures.EXAMPLE_LENGTH]


def test_the_shared_value_is_picklable_and_small(console, jobs):
    for n in range(30):
        jobs.failed(f"task_{n}", error=f"E{n}x: " + LONG)
    snapshot = failures_view.shared_report(
        settings.WORKER_DATABASE,
        settings.GRAPHILE_WORKER_SCHEMA,
        task="",
        state=failures.FailureState.BOTH,
    )
    size = len(pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL))
    assert len(snapshot.value.report.groups) == 30
    assert size < 30 * (failures.EXCERPT_LENGTH + 400), size
