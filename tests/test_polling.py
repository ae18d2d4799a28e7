"""Polling that costs the same for one viewer or fifty (#15): the overview's live part is
answered from one shared snapshot, 304 when nothing changed, one rendering per change."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.db import connection

from worker_admin import snapshots
from worker_admin.utils import WorkerUtils

HTMX = {"HX-Request": "true"}


@pytest.fixture
def sharing(settings, transactional_db):
    settings.SHARED_SNAPSHOT_SECONDS = 60
    caches[snapshots.CACHE].clear()
    yield
    caches[snapshots.CACHE].clear()


def _queries(client, **headers):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as seen:
        response = client.get("/", headers=headers)
    return response, [q["sql"] for q in seen.captured_queries]


def test_unchanged_counts__the_second_poll_is_304_without_counting(sharing, console, worker_rows):
    WorkerUtils().add_raw_job("poll_task", {})
    first, _ = _queries(console, **HTMX)
    assert first.status_code == 200 and first["ETag"]
    assert "no-cache" in first["Cache-Control"] and "private" in first["Cache-Control"]

    again, sql = _queries(console, **HTMX, **{"If-None-Match": first["ETag"]})
    assert again.status_code == 304 and again["ETag"] == first["ETag"]
    assert not any("_private_jobs" in q for q in sql), sql  # the shared snapshot, no count


def test_a_change_is_seen_once_the_snapshot_is_renewed(sharing, console, worker_rows, settings):
    first, _ = _queries(console, **HTMX)
    WorkerUtils().add_raw_job("poll_task", {})
    settings.SHARED_SNAPSHOT_SECONDS = 0  # the interval has passed
    second, _ = _queries(console, **HTMX, **{"If-None-Match": first["ETag"]})
    assert second.status_code == 200 and second["ETag"] != first["ETag"]


def test_viewers_with_other_roles_get_other_etags(sharing, console, django_user_model, worker_rows):
    from django.contrib.auth.models import Group
    from django.test import Client

    admin = django_user_model.objects.create_user("poll_admin", password="pw-123456789")
    admin.groups.add(Group.objects.get(name="admin"))
    other = Client()
    other.force_login(admin)
    mine, _ = _queries(console, **HTMX)
    theirs, _ = _queries(other, **HTMX)
    assert mine.status_code == theirs.status_code == 200
    assert mine["ETag"] != theirs["ETag"]


def test_a_full_page_load_is_never_answered_from_the_shared_rendering(sharing, console):
    page = console.get("/")
    assert page.status_code == 200 and "ETag" not in page
    assert "csrfmiddlewaretoken" in page.content.decode() or "logout" in page.content.decode()


def test_a_new_snapshot_of_the_same_numbers__still_304(sharing, console, worker_rows, settings):
    # Every poll takes a new snapshot (a new "as of" time); what the part shows is the same,
    # so its ETag is too: the stamp is left out of the digest.
    settings.SHARED_SNAPSHOT_SECONDS = 0
    first, _ = _queries(console, **HTMX)
    again, _ = _queries(console, **HTMX, **{"If-None-Match": first["ETag"]})
    assert first.status_code == 200 and 'class="as-of"' in first.content.decode()
    assert again.status_code == 304 and again["ETag"] == first["ETag"]


def test_the_jobs_list_poll__shared_and_304_when_its_rows_did_not_change(
    sharing, console, worker_rows
):
    from django.test.utils import CaptureQueriesContext

    WorkerUtils().add_raw_job("poll_task", {})
    first = console.get("/jobs/", headers=HTMX)
    assert first.status_code == 200 and first["ETag"] and b"poll_task" in first.content
    with CaptureQueriesContext(connection) as seen:
        again = console.get("/jobs/", headers={**HTMX, "If-None-Match": first["ETag"]})
    assert again.status_code == 304
    assert not any("_private_jobs" in q["sql"] for q in seen.captured_queries)
    WorkerUtils().add_raw_job("poll_task_two", {})
    caches[snapshots.CACHE].clear()  # the interval has passed
    snapshots.forget()
    changed = console.get("/jobs/", headers={**HTMX, "If-None-Match": first["ETag"]})
    assert changed.status_code == 200 and b"poll_task_two" in changed.content


def test_the_first_viewer_after_the_interval__answered_from_the_last_snapshot_then_renewed(
    sharing, console, worker_rows, settings
):
    """The overview past its interval: the page answers with the last snapshot (its "as of"
    time says when) without counting in the request, and the next snapshot is taken after the
    response, so the next viewer sees the change without counting either."""
    from dataclasses import replace
    from time import time

    from django.test.utils import CaptureQueriesContext

    from worker_admin import databases
    from worker_admin.replica import read_alias
    from worker_admin.views.database_health import overview_snapshot

    settings.SHARED_SNAPSHOT_SECONDS = 10
    WorkerUtils().add_raw_job("poll_task", {})
    assert b"poll_task" in console.get("/").content
    WorkerUtils().add_raw_job("poll_task_two", {})
    taken = overview_snapshot(databases.main(), settings.GRAPHILE_WORKER_SCHEMA)
    name = f"overview:{read_alias()}:{settings.GRAPHILE_WORKER_SCHEMA}"
    from tests.test_snapshots import _store

    _store(name, replace(taken, taken_at=time() - 15))  # past the interval, within twice it
    snapshots.forget()
    answered = console.get("/")
    assert b"poll_task_two" not in answered.content  # the last snapshot, not a count
    snapshots.settle()  # the renewal runs on a thread of its own once the response is out
    with CaptureQueriesContext(connection) as seen:
        renewed = console.get("/")
    assert b"poll_task_two" in renewed.content
    assert not any("_private_jobs" in q["sql"] for q in seen.captured_queries)
