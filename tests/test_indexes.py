"""The opt-in indexes: `manage.py console_indexes list|preview|create|drop`, audited.

CREATE INDEX CONCURRENTLY cannot run inside a transaction, so these tests commit (worker_rows)
and drop whatever they created at the end.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connections

from worker_admin import indexes
from worker_admin.audit import AuditEntry


def _run(*args: str) -> str:
    out = StringIO()
    call_command("console_indexes", *args, stdout=out)
    return out.getvalue()


def _present() -> set[str]:
    with connections[settings.WORKER_DATABASE].cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s",
            [settings.GRAPHILE_WORKER_SCHEMA],
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.fixture
def clean_indexes(worker_rows):
    yield
    for name in indexes.INDEXES:
        indexes.drop(settings.WORKER_DATABASE, settings.GRAPHILE_WORKER_SCHEMA, name)


def test_list__names_every_index_and_says_absent(clean_indexes):
    text = _run("list")
    for name in indexes.INDEXES:
        assert name in text
    assert text.count("absent") == len(indexes.INDEXES)


def test_preview__prints_sql_size_and_write_cost_and_changes_nothing(clean_indexes):
    before = _present()
    text = _run("preview", "console_jobs_task")
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS console_jobs_task" in text
    assert "write cost:" in text and "size: ~" in text and "Nothing was changed" in text
    assert _present() == before
    assert not AuditEntry.objects.filter(action__startswith="index_").exists()


def test_create_then_drop__concurrently_and_audited(clean_indexes):
    text = _run("create", "console_jobs_locked", "--reason", "workers page is slow")
    assert "CREATE INDEX CONCURRENTLY" in text and "Created console_jobs_locked." in text
    assert "console_jobs_locked" in _present()
    assert "present" in _run("list").split("console_jobs_locked", 1)[1].splitlines()[0]
    again = _run("create", "console_jobs_locked")  # again: nothing to do, nothing breaks
    assert "already exists; nothing to create" in again
    _run("drop", "console_jobs_locked")
    assert "console_jobs_locked" not in _present()
    entries = list(AuditEntry.objects.filter(action__startswith="index_").order_by("id"))
    # CONCURRENTLY cannot share a transaction with its entry: "started", then "done".
    assert [(e.action, e.outcome) for e in entries] == [
        ("index_create", "started"),
        ("index_create", "done"),
        ("index_drop", "started"),
        ("index_drop", "done"),
    ]
    assert all(e.via == "cli" for e in entries)
    assert entries[0].reason == entries[1].reason == "workers page is slow"
    assert entries[1].parameters["index"] == "console_jobs_locked"
    assert entries[1].parameters["started_entry"] == entries[0].pk


def test_the_planner_uses_the_locked_index_for_the_workers_page(clean_indexes):
    _run("create", "console_jobs_locked")
    with connections[settings.WORKER_DATABASE].cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # an empty table: force the choice it has
        cursor.execute(
            f"EXPLAIN SELECT locked_by, count(*) FROM "
            f"{settings.GRAPHILE_WORKER_SCHEMA}._private_jobs WHERE locked_by = 'w1' "
            "GROUP BY 1"
        )
        plan = " ".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "console_jobs_locked" in plan


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "jobs_main_index"), "no opt-in index called"),
        (("drop", "jobs_pkey1"), "no opt-in index called"),
        (("preview",), "Name the index"),
        (("create", "x'; DROP TABLE jobs; --"), "no opt-in index called"),
    ],
)
def test_bad_names_are_refused_and_change_nothing(clean_indexes, args, message):
    before = _present()
    with pytest.raises(CommandError, match=message):
        _run(*args)
    assert _present() == before


def test_overview_counts_locked_jobs_exactly_once_the_locked_index_exists(
    clean_indexes, monkeypatch
):
    """On a large table the overview samples id windows, which can miss every locked job (they
    are few); with console_jobs_locked it counts them, and finds the oldest lock, exactly."""
    from tests.factories import JobFactory
    from worker_admin import stats
    from worker_admin.utils import RawJobSpec, WorkerUtils

    utils = WorkerUtils()
    jobs = JobFactory(utils)
    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(400)])
    held = [jobs.locked(by=f"graphile_worker_{n}", age=f"{n + 1} hours") for n in range(7)]
    jobs.sql(f"ANALYZE {settings.GRAPHILE_WORKER_SCHEMA}._private_jobs")
    monkeypatch.setattr(stats, "EXACT_ROW_LIMIT", 100)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", 20)
    monkeypatch.setattr(stats, "SAMPLE_WINDOWS", 2)
    monkeypatch.setattr(stats, "SAMPLE_REUSE_SECONDS", 0)

    sampled = stats.queue_stats(settings.WORKER_DATABASE)
    assert not sampled.exact and not sampled.locked_is_exact
    assert sampled.oldest_lock_at is None

    _run("create", "console_jobs_locked")
    counted = stats.queue_stats(settings.WORKER_DATABASE)
    assert not counted.exact and counted.locked_is_exact
    assert counted.counts.locked == len(held)
    (oldest,) = jobs.sql(
        f"SELECT min(locked_at) FROM {settings.GRAPHILE_WORKER_SCHEMA}._private_jobs"
    )[0]
    assert counted.oldest_lock_at == oldest


def test_locked_and_failing_counts_are_exact_and_the_same_everywhere(
    clean_indexes, monkeypatch, client, django_user_model
):
    """With console_jobs_locked and console_jobs_failing, the sampled overview shows locked,
    failed and retrying jobs exactly, and the jobs tabs and the API show the same numbers;
    every queue is listed, seen by the sample or not."""
    from django.urls import reverse

    from tests.factories import JobFactory
    from worker_admin import stats
    from worker_admin.utils import RawJobSpec, WorkerUtils

    utils = WorkerUtils()
    jobs = JobFactory(utils)
    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(400)])
    for n in range(5):
        jobs.locked(by=f"graphile_worker_{n}")
    for _ in range(3):
        jobs.failed("t")
    jobs.retrying("t")
    jobs.add("t", queue_name="rare")  # one job: a sample of 2 blocks rarely sees it
    jobs.sql(f"ANALYZE {settings.GRAPHILE_WORKER_SCHEMA}._private_jobs")
    monkeypatch.setattr(stats, "EXACT_ROW_LIMIT", 100)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", 40)
    monkeypatch.setattr(stats, "SAMPLE_WINDOWS", 4)
    monkeypatch.setattr(stats, "SAMPLE_REUSE_SECONDS", 0)
    _run("create", "console_jobs_locked")
    _run("create", "console_jobs_failing")
    from tests.test_api import Api, user_with_token

    user, secret = user_with_token(django_user_model, "viewer", "oncall")
    client.force_login(user)

    overview = client.get(reverse("worker_admin:overview")).context["stats"]
    assert not overview.exact
    for name, want in (("locked", 5), ("failed", 3), ("retrying", 1)):
        assert overview.counts.estimate(name) == stats.Estimate.exact_count(want)
    assert [group.name for group in overview.by_queue] == ["rare"]
    tabs = {t.key: t.count for t in client.get(reverse("worker_admin:jobs")).context["tabs"]}
    assert tabs["locked"].display == "5" and tabs["failed"].display == "3"
    api = Api(client, secret).get("/api/stats").json()
    assert api["estimates"]["locked"] == {
        "value": 5,
        "low": 5,
        "high": 5,
        "exact": True,
        "method": "exact",
    }
    assert not api["estimates"]["total"]["exact"]
    assert api["estimates"]["total"]["low"] <= 410 <= api["estimates"]["total"]["high"]


@pytest.mark.parametrize("state", ["failed", "retrying"])
def test_the_planner_can_use_the_failing_index_for_the_failed_and_retrying_tabs(
    clean_indexes, state
):
    # The failed state is "attempts >= max_attempts"; the index says "attempts > 0". Unless the
    # predicate also says attempts > 0, PostgreSQL cannot prove the index applies and the failed
    # tab reads the whole table at 10M jobs even with the index.
    from worker_admin.models import Job
    from worker_admin.states import RETRYING, STATE_PREDICATES, JobState

    predicate = STATE_PREDICATES[JobState.FAILED] if state == "failed" else RETRYING
    _run("create", "console_jobs_failing")
    with connections[settings.WORKER_DATABASE].cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # an empty table: force the choice it has
    try:
        jobs = Job.objects.using(settings.WORKER_DATABASE).filter(predicate)
        plans = [jobs.order_by("-id")[:50].explain(), jobs.values("id")[:1000].explain()]
    finally:
        with connections[settings.WORKER_DATABASE].cursor() as cursor:
            cursor.execute("RESET enable_seqscan")
    assert all("console_jobs_failing" in plan for plan in plans), plans


def test_a_filtered_tabs_rare_locked_count_can_use_the_locked_index(clean_indexes):
    # A hot task's locked jobs are few: "locked_at IS NOT NULL" alone cannot use
    # console_jobs_locked (its predicate is locked_by IS NOT NULL), so the count walked the
    # task's millions of jobs and ran out of its budget at 10M. The tabs count what the overview
    # counts when the index exists: jobs with locked_by set.
    from worker_admin.models import Job
    from worker_admin.views.jobs import _rare_predicate

    alias = settings.WORKER_DATABASE
    jobs = Job.objects.using(alias).filter(task_id=1)
    _run("create", "console_jobs_locked")
    with connections[alias].cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # an empty table: force the choice it has
    try:
        plan = jobs.filter(_rare_predicate("locked", alias)).values("id")[:1001].explain()
    finally:
        with connections[alias].cursor() as cursor:
            cursor.execute("RESET enable_seqscan")
    assert "console_jobs_locked" in plan, plan
