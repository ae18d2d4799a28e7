"""WorkerUtils job actions (complete, fail, reschedule, remove, force-unlock) on the real schema
functions, with the 4-hour rule: a job a worker locked less than four hours ago is skipped and
reported as such; an older lock counts as abandoned and the job is acted on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from worker_admin.models import Job
from worker_admin.states import JobState
from worker_admin.utils import (
    MAX_IDS_PER_CALL,
    RUN_NOW,
    FeatureUnavailable,
    ForceUnlockResult,
    InvalidJobAction,
    JobActionResult,
    RemoveJobResult,
    RescheduleJobOptions,
    WorkerUtils,
)

# Identity values start at 1 in the test database; no test adds this many jobs.
NO_SUCH_JOB = 9_000_000_000


def pick(job: Job, *fields: str) -> dict[str, Any]:
    return {name: getattr(job, name) for name in fields}


def state_of(job_id: int) -> str:
    return Job.objects.with_state().get(id=job_id).state


def db_now(jobs) -> datetime:
    return jobs.sql("SELECT now()")[0][0]


@pytest.fixture
def four_hour_jobs(jobs) -> dict[str, Job]:
    """Free, locked an hour ago (a live worker holds it), locked five hours ago (abandoned)."""
    return {
        "free": jobs.ready(payload={"n": "free"}, max_attempts=3),
        "recent": jobs.locked(by="worker-1", age="1 hour", max_attempts=3),
        "stale": jobs.locked(by="worker-2", age="5 hours", max_attempts=3),
    }


# -- complete_jobs -------------------------------------------------------------------------------


def test_complete_jobs__deletes_and_returns_the_rows(utils, jobs):
    a, b = jobs.ready(), jobs.scheduled()

    result = utils.complete_jobs([a.id, b.id])

    assert result == JobActionResult(
        requested=(a.id, b.id), changed=[a, b], skipped_locked=(), missing=()
    )
    assert result.changed_ids == (a.id, b.id)
    assert result.summary == "changed 2 of 2"
    assert not Job.objects.exists()


def test_complete_jobs__result_carries_the_deleted_payloads(utils, jobs):
    a = jobs.add(payload={"to": "a@example.org", "items": [1, 2]}, job_key="mail-a", priority=4)
    b = utils.add_batch_job("digest", [{"id": 1}, {"id": 2}])

    result = utils.complete_jobs([a.id, b.id])

    assert [pick(job, "id", "payload", "key", "priority", "task_id") for job in result.changed] == [
        {
            "id": a.id,
            "payload": {"to": "a@example.org", "items": [1, 2]},
            "key": "mail-a",
            "priority": 4,
            "task_id": a.task_id,
        },
        {
            "id": b.id,
            "payload": [{"id": 1}, {"id": 2}],
            "key": None,
            "priority": 0,
            "task_id": b.task_id,
        },
    ]


def test_complete_jobs__four_hour_rule(utils, four_hour_jobs):
    free, recent, stale = four_hour_jobs.values()

    result = utils.complete_jobs([free.id, recent.id, stale.id])

    assert result == JobActionResult(
        requested=(free.id, recent.id, stale.id),
        changed=[free, stale],
        skipped_locked=(recent.id,),
        missing=(),
    )
    assert result.summary == "changed 2 of 3; 1 skipped because a worker holds it"
    assert list(Job.objects.values_list("id", "locked_by")) == [(recent.id, "worker-1")]


def test_complete_jobs__already_completed_ids_are_missing(utils, jobs):
    a, b = jobs.ready(), jobs.ready()
    utils.complete_jobs([a.id])

    result = utils.complete_jobs([a.id, b.id, NO_SUCH_JOB])

    assert result == JobActionResult(
        requested=(a.id, b.id, NO_SUCH_JOB),
        changed=[b],
        skipped_locked=(),
        missing=(a.id, NO_SUCH_JOB),
    )
    assert result.summary == "changed 1 of 3; 2 not found"


def test_complete_jobs__duplicates_collapse_and_order_follows_the_request(utils, jobs):
    a, b = jobs.ready(), jobs.ready()

    result = utils.complete_jobs([b.id, a.id, b.id, b.id, a.id])

    assert result == JobActionResult(
        requested=(b.id, a.id), changed=[b, a], skipped_locked=(), missing=()
    )
    assert result.changed_ids == (b.id, a.id)


def test_complete_jobs__exactly_the_limit_is_accepted(utils):
    ids = list(range(NO_SUCH_JOB, NO_SUCH_JOB + MAX_IDS_PER_CALL))

    result = utils.complete_jobs(ids)

    assert (result.requested, result.changed, result.missing) == (tuple(ids), [], tuple(ids))
    assert result.summary == "changed 0 of 10,000; 10,000 not found"


# -- permanently_fail_jobs -----------------------------------------------------------------------


def test_permanently_fail_jobs__default_reason_and_four_hour_rule(utils, jobs, four_hour_jobs):
    free, recent, stale = four_hour_jobs.values()

    result = utils.permanently_fail_jobs([free.id, recent.id, stale.id, NO_SUCH_JOB])

    assert result == JobActionResult(
        requested=(free.id, recent.id, stale.id, NO_SUCH_JOB),
        changed=[free, stale],
        skipped_locked=(recent.id,),
        missing=(NO_SUCH_JOB,),
    )
    assert result.summary == "changed 2 of 4; 1 skipped because a worker holds it; 1 not found"
    now = db_now(jobs)
    fields = ("attempts", "max_attempts", "last_error", "locked_by", "updated_at")
    assert [pick(job, *fields) for job in result.changed] == [
        {
            "attempts": 3,
            "max_attempts": 3,
            "last_error": "Manually marked as failed",
            "locked_by": None,
            "updated_at": now,
        },
        {
            "attempts": 3,
            "max_attempts": 3,
            "last_error": "Manually marked as failed",
            "locked_by": "worker-2",  # the abandoned lock itself stays
            "updated_at": now,
        },
    ]
    assert pick(Job.objects.get(id=recent.id), "attempts", "last_error") == {
        "attempts": 1,
        "last_error": None,
    }
    assert state_of(free.id) == JobState.FAILED


def test_permanently_fail_jobs__custom_reason(utils, jobs):
    job = jobs.ready()

    result = utils.permanently_fail_jobs([job.id], reason="bad payload: missing 'to'")

    assert result.changed_ids == (job.id,)
    assert pick(result.changed[0], "attempts", "last_error") == {
        "attempts": 25,
        "last_error": "bad payload: missing 'to'",
    }


def test_permanently_fail_jobs__reason_at_the_limit(utils, jobs):
    job = jobs.ready()

    result = utils.permanently_fail_jobs([job.id], reason="x" * 10_000)

    assert result.changed[0].last_error == "x" * 10_000


# -- reschedule_jobs -----------------------------------------------------------------------------


def test_reschedule_jobs__only_priority_keeps_run_at(utils, jobs):
    job = jobs.scheduled(priority=1, max_attempts=7)

    result = utils.reschedule_jobs([job.id], RescheduleJobOptions(priority=9))

    assert result == JobActionResult(
        requested=(job.id,), changed=[job], skipped_locked=(), missing=()
    )
    fields = ("run_at", "priority", "attempts", "max_attempts", "updated_at")
    assert pick(result.changed[0], *fields) == {
        "run_at": job.run_at,
        "priority": 9,
        "attempts": 0,
        "max_attempts": 7,
        "updated_at": db_now(jobs),
    }


def test_reschedule_jobs__every_field(utils, jobs):
    job = jobs.retrying()
    at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)

    result = utils.reschedule_jobs(
        [job.id], RescheduleJobOptions(run_at=at, priority=-3, attempts=1, max_attempts=9)
    )

    assert pick(
        result.changed[0], "run_at", "priority", "attempts", "max_attempts", "last_error"
    ) == {
        "run_at": at,
        "priority": -3,
        "attempts": 1,
        "max_attempts": 9,
        "last_error": "timeout",
    }


def test_reschedule_jobs__run_now_uses_the_database_clock(utils, jobs):
    job = jobs.scheduled()
    assert RescheduleJobOptions.run_now(priority=2) == RescheduleJobOptions(RUN_NOW, priority=2)

    result = utils.reschedule_jobs([job.id], RescheduleJobOptions.run_now())

    now = db_now(jobs)
    assert pick(result.changed[0], "run_at", "updated_at", "priority") == {
        "run_at": now,
        "updated_at": now,
        "priority": 0,
    }
    assert state_of(job.id) == JobState.READY


@pytest.mark.parametrize(
    ("options", "state"),
    [
        (RescheduleJobOptions(attempts=0), JobState.READY),
        (
            RescheduleJobOptions(run_at=datetime(2040, 1, 1, tzinfo=UTC), attempts=0),
            JobState.SCHEDULED,
        ),
    ],
)
def test_reschedule_jobs__attempts_zero_revives_a_failed_job(utils, jobs, options, state):
    job = jobs.failed(max_attempts=2)
    assert state_of(job.id) == JobState.FAILED

    result = utils.reschedule_jobs([job.id], options)

    assert pick(result.changed[0], "attempts", "max_attempts", "last_error", "is_available") == {
        "attempts": 0,
        "max_attempts": 2,
        "last_error": "boom",
        "is_available": True,
    }
    assert state_of(job.id) == state


def test_reschedule_jobs__four_hour_rule(utils, four_hour_jobs):
    free, recent, stale = four_hour_jobs.values()

    result = utils.reschedule_jobs(
        [stale.id, recent.id, free.id, NO_SUCH_JOB], RescheduleJobOptions(priority=8)
    )

    assert result == JobActionResult(
        requested=(stale.id, recent.id, free.id, NO_SUCH_JOB),
        changed=[stale, free],
        skipped_locked=(recent.id,),
        missing=(NO_SUCH_JOB,),
    )
    assert [pick(job, "id", "priority", "locked_by") for job in result.changed] == [
        {"id": stale.id, "priority": 8, "locked_by": "worker-2"},
        {"id": free.id, "priority": 8, "locked_by": None},
    ]
    assert Job.objects.get(id=recent.id).priority == 0


# -- remove_job ----------------------------------------------------------------------------------


def test_remove_job__unlocked_job_is_deleted(utils, jobs):
    job = jobs.add(payload={"to": "x"}, job_key="welcome:1")

    result = utils.remove_job("welcome:1")

    assert result == RemoveJobResult(key="welcome:1", removed=job, detached=None)
    assert result.found
    assert pick(result.removed, "key", "payload") == {"key": "welcome:1", "payload": {"to": "x"}}
    assert result.summary == f"removed job {job.id} (key 'welcome:1')"
    assert not Job.objects.exists()


def test_remove_job__locked_job_is_detached(utils, jobs):
    job = jobs.locked(by="worker-1", age="1 hour", job_key="welcome:2")

    result = utils.remove_job("welcome:2")

    assert result == RemoveJobResult(key="welcome:2", removed=None, detached=job)
    assert result.found
    fields = ("key", "attempts", "max_attempts", "locked_by", "updated_at")
    expected = {
        "key": None,
        "attempts": 25,
        "max_attempts": 25,
        "locked_by": "worker-1",
        "updated_at": db_now(jobs),
    }
    assert pick(result.detached, *fields) == expected
    assert pick(Job.objects.get(id=job.id), *fields) == expected
    assert result.summary == (
        f"job {job.id} (key 'welcome:2') is held by a worker: it keeps running, lost its key "
        "and will not be retried"
    )


def test_remove_job__abandoned_lock_is_deleted(utils, jobs):
    job = jobs.locked(by="worker-1", age="5 hours", job_key="welcome:3")

    result = utils.remove_job("welcome:3")

    assert result == RemoveJobResult(key="welcome:3", removed=job, detached=None)
    assert not Job.objects.exists()


def test_remove_job__unknown_key(utils, jobs):
    job = jobs.add(job_key="other")

    result = utils.remove_job("no-such-key")

    assert result == RemoveJobResult(key="no-such-key", removed=None, detached=None)
    assert not result.found
    assert result.summary == "no job has the key 'no-such-key'"
    assert list(Job.objects.values_list("id", "key")) == [(job.id, "other")]


# -- force_unlock_workers ------------------------------------------------------------------------


def test_force_unlock_workers__returns_what_it_freed_and_leaves_other_locks(utils, jobs):
    mine = [
        jobs.locked(by="w1", age="1 minute", queue_name="q1"),
        jobs.locked(by="w1", age="6 hours"),
    ]
    theirs = jobs.locked(by="w2", age="1 minute", queue_name="q2")
    jobs.set(mine[0], last_error="'crashed'")
    jobs.sql(
        f"UPDATE {jobs.q}._private_job_queues SET locked_at = now(), "
        "locked_by = CASE queue_name WHEN 'q1' THEN 'w1' ELSE 'w2' END"
    )
    before = Job.objects.get(id=mine[0].id)

    result = utils.force_unlock_workers(["w1", "w9", "w1"])

    assert result == ForceUnlockResult(
        jobs_unlocked=[mine[0].id, mine[1].id], queues_unlocked=["q1"]
    )
    assert result.summary == "unlocked 2 jobs and 1 queue"
    fields = ("locked_at", "locked_by", "attempts", "run_at", "last_error")
    assert pick(Job.objects.get(id=mine[0].id), *fields) == {
        **pick(before, *fields),
        "locked_at": None,
        "locked_by": None,
    }
    assert Job.objects.get(id=theirs.id).locked_by == "w2"
    assert jobs.sql(
        f"SELECT queue_name, locked_by FROM {jobs.q}._private_job_queues ORDER BY 1"
    ) == [
        ("q1", None),
        ("q2", "w2"),
    ]


def test_force_unlock_workers__nothing_held(utils, jobs):
    jobs.locked(by="w2")

    result = utils.force_unlock_workers(["w1"])

    assert result == ForceUnlockResult(jobs_unlocked=[], queues_unlocked=[])
    assert result.summary == "nothing to unlock: those workers hold no locks"


# -- summaries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "skipped", "missing", "sentence"),
    [
        (2, 0, 0, "changed 2 of 2"),
        (0, 1, 0, "changed 0 of 1; 1 skipped because a worker holds it"),
        (1, 2, 0, "changed 1 of 3; 2 skipped because a worker holds them"),
        (0, 0, 3, "changed 0 of 3; 3 not found"),
        (1, 2, 1, "changed 1 of 4; 2 skipped because a worker holds them; 1 not found"),
    ],
)
def test_job_action_result__summary(changed, skipped, missing, sentence):
    ids = iter(range(1, 100))
    result = JobActionResult(
        requested=tuple(range(1, changed + skipped + missing + 1)),
        changed=[Job(id=next(ids)) for _ in range(changed)],
        skipped_locked=tuple(next(ids) for _ in range(skipped)),
        missing=tuple(next(ids) for _ in range(missing)),
    )
    assert result.summary == sentence


def test_force_unlock_result__summary_singular_and_plural():
    assert ForceUnlockResult([1], ["q"]).summary == "unlocked 1 job and 1 queue"
    assert ForceUnlockResult([1, 2], []).summary == "unlocked 2 jobs and 0 queues"


# -- arguments refused before any SQL ------------------------------------------------------------

TOO_MANY = list(range(1, MAX_IDS_PER_CALL + 2))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda u: u.complete_jobs([True]), "whole numbers; got True"),
        (lambda u: u.complete_jobs([1, True]), "whole numbers; got True"),
        (lambda u: u.complete_jobs([-1]), "between 1 and 9223372036854775807; got -1"),
        (lambda u: u.complete_jobs([0]), "between 1 and"),
        (lambda u: u.complete_jobs([2**63]), "got 9223372036854775808"),
        (lambda u: u.complete_jobs(["1"]), "whole numbers; got '1'"),
        (lambda u: u.complete_jobs([1.0]), "whole numbers; got 1.0"),
        (lambda u: u.complete_jobs([None]), "whole numbers; got None"),
        (lambda u: u.complete_jobs("123"), "Job ids must be given as a list, not str"),
        (lambda u: u.complete_jobs(7), "Job ids must be given as a list, not int"),
        (lambda u: u.complete_jobs([]), "No job ids given"),
        (
            lambda u: u.complete_jobs(TOO_MANY),
            "10,001 job ids given; at most 10,000 ids per call; use the bulk action, which "
            "works in chunks",
        ),
        (lambda u: u.permanently_fail_jobs([], "r"), "No job ids given"),
        (lambda u: u.permanently_fail_jobs([1], "a\x00b"), "NUL"),
        (lambda u: u.permanently_fail_jobs([1], "x" * 10_001), "10,001 characters; the limit"),
        (lambda u: u.permanently_fail_jobs([1], ""), "The reason must not be empty"),
        (lambda u: u.permanently_fail_jobs([1], 42), "The reason must be text"),
        (lambda u: u.reschedule_jobs([1], RescheduleJobOptions(priority=40_000)), "priority"),
        (lambda u: u.reschedule_jobs([1], RescheduleJobOptions(priority=-32_769)), "priority"),
        (lambda u: u.reschedule_jobs([1], RescheduleJobOptions(priority=True)), "priority"),
        (lambda u: u.reschedule_jobs([1], RescheduleJobOptions(attempts=-1)), "attempts"),
        (lambda u: u.reschedule_jobs([1], RescheduleJobOptions(attempts=32_768)), "attempts"),
        (lambda u: u.reschedule_jobs([1], RescheduleJobOptions(max_attempts=0)), "max_attempts"),
        (
            lambda u: u.reschedule_jobs([1], RescheduleJobOptions(run_at=datetime(2030, 1, 1))),
            "timezone-aware",
        ),
        (lambda u: u.reschedule_jobs([1], RescheduleJobOptions(run_at="now")), "timezone-aware"),
        (lambda u: u.reschedule_jobs([1], RescheduleJobOptions()), "Nothing to change"),
        (lambda u: u.reschedule_jobs([1], {"priority": 1}), "RescheduleJobOptions"),
        (lambda u: u.reschedule_jobs([0], RescheduleJobOptions(priority=1)), "between 1 and"),
        (lambda u: u.remove_job(""), "The job key must not be empty"),
        (lambda u: u.remove_job(None), "The job key must be text"),
        (lambda u: u.remove_job("k" * 513), "513 characters; the limit is 512"),
        (lambda u: u.remove_job("a\x00"), "NUL"),
        (lambda u: u.force_unlock_workers([]), "No worker ids given"),
        (lambda u: u.force_unlock_workers("w1"), "Worker ids must be given as a list, not str"),
        (lambda u: u.force_unlock_workers([""]), "A worker id must not be empty"),
        (lambda u: u.force_unlock_workers([None]), "Worker ids must be text; got None"),
        (lambda u: u.force_unlock_workers([7]), "Worker ids must be text; got 7"),
        (lambda u: u.force_unlock_workers(["w" * 1_001]), "the limit is 1,000"),
        (lambda u: u.force_unlock_workers([f"w{i}" for i in TOO_MANY]), "at most 10,000 ids"),
    ],
)
def test_job_actions__bad_arguments_refused_before_any_sql(
    utils, django_assert_num_queries, call, message
):
    with django_assert_num_queries(0), pytest.raises(InvalidJobAction) as raised:
        call(utils)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


# -- refusing to report what the console cannot see ----------------------------------------------


def test_job_actions__no_schema(db):
    missing = WorkerUtils(schema="no_such_worker_schema")
    with pytest.raises(
        FeatureUnavailable, match='no Graphile Worker schema "no_such_worker_schema"'
    ):
        missing.complete_jobs([1])
    with pytest.raises(FeatureUnavailable, match="no Graphile Worker schema"):
        missing.force_unlock_workers(["w1"])


def test_job_actions__row_level_security_would_hide_every_job(utils, jobs):
    """A role that row-level security blinds would see every id as "not found": refuse instead."""
    job = jobs.ready()
    role = f"gw_test_rls_{uuid.uuid4().hex[:12]}"
    jobs.sql(f'CREATE ROLE "{role}" NOLOGIN')  # rolled back with the test's transaction
    jobs.sql(f'GRANT USAGE ON SCHEMA {jobs.q} TO "{role}"')
    jobs.sql(f'GRANT SELECT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {jobs.q} TO "{role}"')
    jobs.sql(f'SET LOCAL ROLE "{role}"')
    try:
        with pytest.raises(FeatureUnavailable, match="row-level security"):
            utils.complete_jobs([job.id])
        with pytest.raises(FeatureUnavailable, match="row-level security"):
            utils.remove_job("k")
    finally:
        jobs.sql("RESET ROLE")
    assert Job.objects.filter(id=job.id).exists()


# -- the 4-hour rule at its boundary ---------------------------------------------------------------

UNDER, OVER = "3 hours 59 minutes", "4 hours 1 minute"


@pytest.fixture
def boundary(jobs) -> dict[str, Job]:
    """Locks a minute either side of four hours: a live worker's job and an abandoned one."""
    return {
        "under": jobs.locked(by="worker-live", age=UNDER, job_key="under"),
        "over": jobs.locked(by="worker-gone", age=OVER, job_key="over"),
    }


@pytest.mark.parametrize(
    "act",
    [
        lambda utils, ids: utils.complete_jobs(ids),
        lambda utils, ids: utils.permanently_fail_jobs(ids, "given up"),
        lambda utils, ids: utils.reschedule_jobs(ids, RescheduleJobOptions(priority=7)),
    ],
    ids=["complete_jobs", "permanently_fail_jobs", "reschedule_jobs"],
)
def test_four_hour_rule__3h59_skipped_4h01_acted_on(utils, boundary, act):
    under, over = boundary["under"], boundary["over"]

    result = act(utils, [under.id, over.id])

    assert (result.changed_ids, result.skipped_locked, result.missing) == (
        (over.id,),
        (under.id,),
        (),
    )
    assert result.summary == "changed 1 of 2; 1 skipped because a worker holds it"
    kept = Job.objects.get(id=under.id)
    assert pick(kept, "locked_by", "priority", "attempts", "last_error") == pick(
        under, "locked_by", "priority", "attempts", "last_error"
    )


def test_four_hour_rule__remove_job_detaches_at_3h59_and_deletes_at_4h01(utils, boundary):
    under, over = boundary["under"], boundary["over"]

    detached = utils.remove_job("under")
    removed = utils.remove_job("over")

    assert (detached.removed, detached.detached.id) == (None, under.id)
    assert (removed.removed.id, removed.detached) == (over.id, None)
    left = Job.objects.get(id=under.id)
    assert (left.key, left.attempts, left.locked_by) == (None, left.max_attempts, "worker-live")
    assert not Job.objects.filter(id=over.id).exists()
