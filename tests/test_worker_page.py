"""One page per worker or lock holder (issue 16 point 5), the workers page's links to it and its
stale filter, and the overview's stale-worker card (point 6)."""

from __future__ import annotations

import html
import re

import pytest
from django.urls import reverse

from tests.test_workers_page import _register


def _text(response) -> str:
    without_tags = re.sub(r"<[^>]+>", " ", response.content.decode())
    return html.unescape(re.sub(r"\s+", " ", without_tags))


def _lock(jobs, worker_id: str, age: str, identifier: str = "send_email") -> int:
    """A job locked by `worker_id`, which may hold any character (the factory quotes none)."""
    job = jobs.ready(identifier)
    jobs.sql(
        "UPDATE graphile_worker._private_jobs SET locked_by = %s, "
        "locked_at = now() - %s::interval, attempts = attempts + 1 WHERE id = %s",
        [worker_id, age, job.id],
    )
    return job.id


def _lock_queue(jobs, worker_id: str, name: str, age: str) -> None:
    jobs.add("send_email", queue_name=name)
    jobs.sql(
        "UPDATE graphile_worker._private_job_queues SET locked_by = %s, "
        "locked_at = now() - %s::interval WHERE queue_name = %s",
        [worker_id, age, name],
    )


def _page(worker_id: str) -> str:
    return reverse("worker_admin:worker", args=[worker_id])


@pytest.fixture
def admin_client(login_as):
    return login_as("admin", "adele")


def test_worker_page__registered_stale_worker_with_its_jobs_queues_and_ages(admin_client, jobs):
    _register(jobs, "graphile_worker_aa", "12 minutes")
    old = _lock(jobs, "graphile_worker_aa", "5 hours")
    young = _lock(jobs, "graphile_worker_aa", "2 minutes")
    _lock_queue(jobs, "graphile_worker_aa", "emails", "3 minutes")
    response = admin_client.get(_page("graphile_worker_aa"))
    assert response.status_code == 200
    detail = response.context["worker"]
    assert detail.registration.stale and detail.registration.host == "h1"
    assert [lock.id for lock in detail.jobs] == [old, young]  # oldest lock first
    assert (detail.job_count, detail.queue_count) == (2, 1)
    text = _text(response)
    assert "stale" in text and "h1 · 42" in text and "past the 4-hour mark" in text
    assert "emails" in text
    body = response.content.decode()
    # The existing previews, pre-filled for this worker: force-unlock and the sweep's dry run.
    assert f'action="{reverse("worker_admin:force_unlock")}"' in body
    assert 'name="worker_ids" value="graphile_worker_aa"' in body
    assert f'action="{reverse("worker_admin:sweep")}"' in body
    # The force-unlock button leads to the existing preview, which changes nothing.
    preview = admin_client.post(
        reverse("worker_admin:force_unlock"), {"worker_ids": "graphile_worker_aa"}
    )
    assert preview.status_code == 200 and "token" in preview.content.decode()
    assert jobs.sql(
        "SELECT count(*) FROM graphile_worker._private_jobs WHERE locked_by = 'graphile_worker_aa'"
    ) == [(2,)]


def test_worker_page__the_threshold_decides_stale(admin_client, jobs):
    _register(jobs, "graphile_worker_bb", "7 minutes")
    assert admin_client.get(_page("graphile_worker_bb")).context["worker"].registration.stale
    relaxed = admin_client.get(_page("graphile_worker_bb"), {"threshold": "10"})
    assert not relaxed.context["worker"].registration.stale


def test_worker_page__node_holder_is_unregistered_and_its_list_is_bounded(
    admin_client, jobs, monkeypatch
):
    from worker_admin import worker_detail

    monkeypatch.setattr(worker_detail, "JOBS_SHOWN", 3)
    for n in range(5):
        _lock(jobs, "pool-7f3a", f"{10 + n} minutes")
    response = admin_client.get(_page("pool-7f3a"))
    detail = response.context["worker"]
    assert detail.registration is None and detail.kind == "Node pool"
    assert (len(detail.jobs), detail.job_count) == (3, 5)
    text = _text(response)
    assert "Node workers never register" in text and "The 3 oldest locks of 5" in text


@pytest.mark.parametrize(
    "worker_id",
    [
        "host/1 worker?#%",
        "<script>alert(1)</script>",
        "with space & ampersand",
        "ünïcødé-工人",
        "trailing/",
        "line\nbreak\tand tab",
        "'; DROP TABLE x; --",
    ],
)
def test_worker_page__odd_ids_round_trip_and_are_escaped(admin_client, jobs, worker_id):
    _lock(jobs, worker_id, "1 minute")
    workers = admin_client.get(reverse("worker_admin:workers"))
    link = _page(worker_id)
    assert (
        html.escape(link, quote=True) in workers.content.decode()
        or link in workers.content.decode()
    )
    response = admin_client.get(link)
    assert response.status_code == 200, link
    assert response.context["worker"].id == worker_id
    assert response.context["worker"].job_count == 1
    body = response.content.decode()
    assert "<script>alert(1)</script>" not in body


def test_worker_page__unknown_and_bad_ids_are_404(admin_client, jobs):
    assert admin_client.get(_page("graphile_worker_gone")).status_code == 404
    assert "No worker “graphile_worker_gone”" in _text(
        admin_client.get(_page("graphile_worker_gone"))
    )
    assert admin_client.get(_page("x" * 2000)).status_code == 404
    assert admin_client.get("/workers/%00/").status_code in (400, 404)


def test_worker_page__viewer_reads_but_gets_no_recovery_buttons(login_as, jobs):
    _lock(jobs, "graphile_worker_cc", "1 minute")
    response = login_as("viewer", "vera").get(_page("graphile_worker_cc"))
    assert response.status_code == 200
    body = response.content.decode()
    assert reverse("worker_admin:force_unlock") not in body
    assert reverse("worker_admin:sweep") not in body
    assert "need the admin role" in _text(response)


def test_workers_page__rows_link_to_the_worker_page_and_filter_to_stale(admin_client, jobs):
    _register(jobs, "graphile_worker_old", "20 minutes")
    _register(jobs, "graphile_worker_new", "5 seconds")
    _lock(jobs, "graphile_worker_new", "1 minute")
    body = admin_client.get(reverse("worker_admin:workers")).content.decode()
    assert f'href="{_page("graphile_worker_old")}?threshold=5"' in body
    assert f'href="{_page("graphile_worker_new")}?threshold=5"' in body
    stale = admin_client.get(reverse("worker_admin:workers"), {"threshold": "5", "stale": "1"})
    assert [w.id for w in stale.context["shown_workers"]] == ["graphile_worker_old"]
    assert stale.context["shown_holders"] == []  # the fresh worker's lock is not listed
    assert "No stale registered worker holds a lock." in _text(stale)


def test_overview__stale_workers_card_links_to_them(admin_client, jobs):
    _register(jobs, "graphile_worker_old", "20 minutes")
    _register(jobs, "graphile_worker_dead", "2 hours")
    _register(jobs, "graphile_worker_new", "5 seconds")
    response = admin_client.get(reverse("worker_admin:overview"))
    body = response.content.decode()
    assert f'href="{reverse("worker_admin:workers")}?threshold=5&amp;stale=1"' in body
    assert re.search(r"Stale workers\s*</span>\s*<a[^>]*>2</a>", body)
