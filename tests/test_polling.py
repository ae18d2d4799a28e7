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


def test_a_full_page_is_its_own_response_with_its_frame__no_etag(sharing, console):
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
    from django.test.utils import CaptureQueriesContext

    from tests.test_snapshots import age_every_snapshot

    settings.SHARED_SNAPSHOT_SECONDS = 10
    WorkerUtils().add_raw_job("poll_task", {})
    assert b"poll_task" in console.get("/").content
    WorkerUtils().add_raw_job("poll_task_two", {})
    age_every_snapshot(15)  # past the interval, within twice it
    answered = console.get("/")
    assert b"poll_task_two" not in answered.content  # the last snapshot, not a count
    snapshots.settle()  # the renewal runs on a thread of its own once the response is out
    with CaptureQueriesContext(connection) as seen:
        renewed = console.get("/")
    assert b"poll_task_two" in renewed.content
    counts = [q["sql"] for q in seen.captured_queries if '_private_jobs"' in q["sql"]]
    assert not counts, counts  # (the size check reads pg_class, not the jobs)


def _a_large_table(monkeypatch) -> None:
    """300 committed jobs of task big_task in queue big_queue, a third failing ("disk full"),
    in a table the console treats as large (over 100 rows: sampled, 4 windows of 10). The test
    asks for worker_rows, which truncates them afterwards."""
    from worker_admin import stats
    from worker_admin.utils import JobSpec, RawJobSpec

    spec = JobSpec(queue_name="big_queue")
    WorkerUtils().add_raw_jobs([RawJobSpec("big_task", {"i": i}, spec) for i in range(300)])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE graphile_worker._private_jobs SET attempts = 1, last_error = 'disk full' "
            "WHERE id % 3 = 0"
        )
        cursor.execute("ANALYZE graphile_worker._private_jobs")
    monkeypatch.setattr(stats, "EXACT_ROW_LIMIT", 100)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", 40)
    monkeypatch.setattr(stats, "SAMPLE_WINDOWS", 4)


@pytest.mark.parametrize(
    ("path", "marker"),
    [("/", "big_task"), ("/tasks/", "big_task"), ("/queues/", "big_queue"), ("/failures/", "disk")],
)
def test_a_large_tables_page_shows_itself_at_once_and_its_counts_right_after(
    sharing, console, worker_rows, monkeypatch, path, marker
):
    """Nobody has watched the overview, tasks, queues or failures of a large table lately: the
    page comes without waiting for the sample ("Counting…", aria-busy), the counts are taken
    right after the response, and the page's first refresh (hx-trigger "load") and the next
    viewer get them without reading the jobs again."""
    from django.test.utils import CaptureQueriesContext

    _a_large_table(monkeypatch)

    def load(**headers):
        with CaptureQueriesContext(connection) as seen:
            response = console.get(path, headers=headers)
        jobs_read = [q["sql"] for q in seen.captured_queries if '_private_jobs"' in q["sql"]]
        return response, response.content.decode(), jobs_read

    first, html, jobs_read = load()
    assert first.status_code == 200 and not jobs_read, jobs_read
    assert 'hx-trigger="load, every' in html and 'aria-busy="true"' in html
    assert ("Counting…" in html or "Grouping…" in html) and marker not in html
    snapshots.settle()  # taken on a thread of its own once the response was out
    follow, html, jobs_read = load(**HTMX)
    assert follow.status_code == 200 and marker in html and not jobs_read, jobs_read
    _, html, jobs_read = load()
    assert marker in html and 'aria-busy="true"' not in html and not jobs_read, jobs_read
    assert 'hx-trigger="every' in html


def test_the_jobs_tabs_of_a_large_table_come_right_after_the_rows(
    sharing, console, worker_rows, monkeypatch
):
    """Unfiltered, the tabs show the overview's sample: when nobody has taken it lately, the
    first load shows the rows at once with "…" tabs, the sample is taken right after the
    response, and the page's load refresh gets it without sampling again."""
    from django.test.utils import CaptureQueriesContext

    from tests.test_jobs import _shown

    _a_large_table(monkeypatch)

    def load(**headers):
        with CaptureQueriesContext(connection) as seen:
            response = console.get("/jobs/", headers=headers)
        samples = sum("WITH s AS MATERIALIZED" in q["sql"] for q in seen.captured_queries)
        return response.content.decode(), samples, _shown(response)

    html, samples, tabs = load()
    assert samples == 0 and set(tabs.values()) == {"…"} and "big_task" in html
    assert 'hx-trigger="load, every' in html and "Counting…" in html
    snapshots.settle()  # taken on a thread of its own once the response was out
    html, samples, tabs = load(**HTMX)
    assert samples == 0 and "…" not in tabs.values() and "Counting…" not in html
