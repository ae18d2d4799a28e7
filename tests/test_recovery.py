"""The stale-worker sweep and the cleanup tasks (worker_admin.recovery, through WorkerUtils) on
the real schema functions. Heartbeats and locks are set relative to the database clock; the test's
transaction fixes now(), so every age below is exact."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest

from worker_admin.models import Job
from worker_admin.recovery import (
    GC_TASK_IDENTIFIERS_WARNING,
    SWEEP_LOCK_KEY,
    CleanupPreview,
    CleanupResult,
    CleanupTask,
    RecoverableJob,
    SweepStaleWorkersOptions,
    SweepStaleWorkersResult,
    format_duration,
)
from worker_admin.utils import FeatureUnavailable, InvalidJobAction, JobSpec, WorkerUtils

RECOVERED_ERROR = "Job recovered after worker interruption"
DRY = SweepStaleWorkersOptions(dry_run=True)


def db_now(jobs) -> datetime:
    return jobs.sql("SELECT now()")[0][0]


def register(jobs, worker_id: str, heartbeat_age: str) -> None:
    jobs.sql(
        f"INSERT INTO {jobs.q}._private_workers (id, last_heartbeat_at) "
        "VALUES (%s, now() - %s::interval)",
        [worker_id, heartbeat_age],
    )


def set_heartbeat(jobs, worker_id: str, age: str) -> None:
    jobs.sql(
        f"UPDATE {jobs.q}._private_workers SET last_heartbeat_at = now() - %s::interval "
        "WHERE id = %s",
        [age, worker_id],
    )


def registered(jobs) -> list[str]:
    return [row[0] for row in jobs.sql(f"SELECT id FROM {jobs.q}._private_workers ORDER BY id")]


def snapshot(jobs) -> dict[str, list[tuple]]:
    """Every worker row, for "nothing changed" checks."""
    return {
        table: jobs.sql(f"SELECT * FROM {jobs.q}.{table} ORDER BY 1")
        for table in ("_private_jobs", "_private_job_queues", "_private_tasks", "_private_workers")
    }


def recoverable(job: Job, now: datetime, delay: timedelta = timedelta(seconds=30)):
    return RecoverableJob(
        id=job.id,
        task_identifier=job.task.identifier,
        locked_by=job.locked_by,
        locked_at=job.locked_at,
        attempts=job.attempts,
        attempts_after=max(0, job.attempts - 1),
        run_at=job.run_at,
        run_at_after=max(job.run_at, now + delay),
    )


def pick(job: Job, *fields: str) -> dict[str, Any]:
    return {name: getattr(job, name) for name in fields}


# -- sweep: who is dead ---------------------------------------------------------------------------


def test_sweep_stale_workers__recovers_stale_workers_and_keeps_healthy_ones(utils, jobs):
    register(jobs, "graphile_worker_healthy", "30 seconds")
    register(jobs, "graphile_worker_stale", "7 minutes 12 seconds")
    kept = jobs.locked(by="graphile_worker_healthy", age="8 minutes")
    lost = jobs.locked(by="graphile_worker_stale", age="8 minutes", queue_name="q")
    jobs.sql(
        f"UPDATE {jobs.q}._private_job_queues SET locked_at = now() - interval '8 minutes', "
        "locked_by = 'graphile_worker_stale'"
    )
    now = db_now(jobs)

    result = utils.sweep_stale_workers()

    assert result == SweepStaleWorkersResult(
        worker_ids=["graphile_worker_stale"],
        recovered_count=1,
        dry_run=False,
        reasons={"graphile_worker_stale": "stale heartbeat 7m 12s ago"},
        excluded={},
        jobs=[recoverable(lost, now)],
        lock_busy=False,
    )
    assert result.summary == "recovered 1 job from 1 dead worker"
    fields = ("locked_at", "locked_by", "attempts", "run_at", "last_error")
    assert pick(Job.objects.get(id=lost.id), *fields) == {
        "locked_at": None,
        "locked_by": None,
        "attempts": lost.attempts - 1,
        "run_at": now + timedelta(seconds=30),
        "last_error": RECOVERED_ERROR,
    }
    assert pick(Job.objects.get(id=kept.id), *fields) == pick(kept, *fields)
    assert jobs.sql(f"SELECT queue_name, locked_by FROM {jobs.q}._private_job_queues") == [
        ("q", None)
    ]
    assert registered(jobs) == ["graphile_worker_healthy"]


def test_sweep_stale_workers__stale_worker_without_jobs_is_deregistered(utils, jobs):
    register(jobs, "graphile_worker_idle", "1 hour")

    result = utils.sweep_stale_workers()

    assert result == SweepStaleWorkersResult(
        worker_ids=["graphile_worker_idle"],
        recovered_count=0,
        dry_run=False,
        reasons={"graphile_worker_idle": "stale heartbeat 1h ago"},
    )
    assert registered(jobs) == []


def test_sweep_stale_workers__resilient_job_holder_is_dead_only_after_three_thresholds(utils, jobs):
    register(jobs, "graphile_worker_resilient", "10 minutes")
    register(jobs, "graphile_worker_plain", "10 minutes")
    resilient = jobs.locked(
        by="graphile_worker_resilient", age="11 minutes", flags=["infrastructure_resilient"]
    )
    plain = jobs.locked(by="graphile_worker_plain", age="11 minutes", flags=["other_flag"])
    now = db_now(jobs)

    at_ten = utils.sweep_stale_workers(DRY)

    assert at_ten == SweepStaleWorkersResult(
        worker_ids=["graphile_worker_plain"],
        recovered_count=0,
        dry_run=True,
        reasons={"graphile_worker_plain": "stale heartbeat 10m ago"},
        excluded={
            "graphile_worker_resilient": "stale heartbeat 10m ago, but holds an "
            "infrastructure_resilient job: dead only after 15m"
        },
        jobs=[recoverable(plain, now)],
    )

    set_heartbeat(jobs, "graphile_worker_resilient", "16 minutes")
    at_sixteen = utils.sweep_stale_workers()

    assert at_sixteen == SweepStaleWorkersResult(
        worker_ids=["graphile_worker_plain", "graphile_worker_resilient"],
        recovered_count=2,
        dry_run=False,
        reasons={
            "graphile_worker_plain": "stale heartbeat 10m ago",
            "graphile_worker_resilient": "stale heartbeat 16m ago, holds an "
            "infrastructure_resilient job: dead after 15m",
        },
        jobs=[recoverable(resilient, now), recoverable(plain, now)],
    )
    assert registered(jobs) == []


def test_sweep_stale_workers__orphan_lock_holders_node_ids_left_out_by_default(utils, jobs):
    register(jobs, "graphile_worker_alive", "10 seconds")
    rust = jobs.locked(by="graphile_worker_0a1b2c", age="6 hours")
    custom = jobs.locked(by="my-custom-worker", age="1 hour")
    jobs.locked(by="pool-3f9c", age="6 hours")
    jobs.locked(by="worker-77aa", age="2 hours")
    jobs.locked(by="graphile_worker_young", age="1 minute")
    jobs.add(queue_name="q1")
    jobs.sql(
        f"UPDATE {jobs.q}._private_job_queues SET locked_at = now() - interval '30 minutes', "
        "locked_by = 'otpool-ab12'"
    )
    before = snapshot(jobs)
    now = db_now(jobs)

    result = utils.sweep_stale_workers(DRY)

    node_reason = (
        "looks like a Node worker, which never registers: its job may still be running "
        "(lock held {}); a sweep with Node lock holders included recovers it"
    )
    assert result == SweepStaleWorkersResult(
        worker_ids=["graphile_worker_0a1b2c", "my-custom-worker"],
        recovered_count=0,
        dry_run=True,
        reasons={
            "graphile_worker_0a1b2c": "orphan lock: not registered, lock held 6h",
            "my-custom-worker": "orphan lock: not registered, lock held 1h",
        },
        excluded={
            "otpool-ab12": node_reason.format("30m"),
            "pool-3f9c": node_reason.format("6h"),
            "worker-77aa": node_reason.format("2h"),
        },
        jobs=[recoverable(rust, now), recoverable(custom, now)],
    )
    assert result.summary == "dry run: would recover 2 jobs from 2 dead workers; 3 left alone"
    assert snapshot(jobs) == before


def test_sweep_stale_workers__includes_node_lock_holders_when_asked(utils, jobs):
    pool = jobs.locked(by="pool-3f9c", age="6 hours")
    worker = jobs.locked(by="worker-77aa", age="2 hours")
    now = db_now(jobs)

    result = utils.sweep_stale_workers(SweepStaleWorkersOptions(include_node_lock_holders=True))

    assert result == SweepStaleWorkersResult(
        worker_ids=["pool-3f9c", "worker-77aa"],
        recovered_count=2,
        dry_run=False,
        reasons={
            "pool-3f9c": "orphan lock: not registered, lock held 6h",
            "worker-77aa": "orphan lock: not registered, lock held 2h",
        },
        jobs=[recoverable(pool, now), recoverable(worker, now)],
    )
    assert not Job.objects.locked().exists()


# -- sweep: dry run, the real thing, the lock -----------------------------------------------------


def test_sweep_stale_workers__dry_run_changes_nothing_and_lists_the_jobs(utils, jobs):
    register(jobs, "graphile_worker_dead", "20 minutes")
    soon = jobs.locked(by="graphile_worker_dead", age="25 minutes")
    later = jobs.set(
        jobs.locked(by="graphile_worker_dead", age="25 minutes"),
        run_at="now() + interval '1 day'",
        attempts="0",
    )
    before = snapshot(jobs)
    now = db_now(jobs)
    options = SweepStaleWorkersOptions(recovery_delay=timedelta(minutes=2), dry_run=True)

    result = utils.sweep_stale_workers(options)

    assert result == SweepStaleWorkersResult(
        worker_ids=["graphile_worker_dead"],
        recovered_count=0,
        dry_run=True,
        reasons={"graphile_worker_dead": "stale heartbeat 20m ago"},
        jobs=[
            RecoverableJob(
                id=soon.id,
                task_identifier="send_email",
                locked_by="graphile_worker_dead",
                locked_at=now - timedelta(minutes=25),
                attempts=1,
                attempts_after=0,
                run_at=now - timedelta(minutes=1),
                run_at_after=now + timedelta(minutes=2),
            ),
            RecoverableJob(
                id=later.id,
                task_identifier="send_email",
                locked_by="graphile_worker_dead",
                locked_at=now - timedelta(minutes=25),
                attempts=0,
                attempts_after=0,
                run_at=now + timedelta(days=1),
                run_at_after=now + timedelta(days=1),
            ),
        ],
    )
    assert snapshot(jobs) == before


def test_sweep_stale_workers__dry_run_list_limit_lists_the_first_and_counts_all(utils, jobs):
    register(jobs, "graphile_worker_dead", "20 minutes")
    held = [jobs.locked(by="graphile_worker_dead", age="25 minutes").id for _ in range(3)]
    options = SweepStaleWorkersOptions(dry_run=True, list_limit=2)

    result = utils.sweep_stale_workers(options)

    assert [job.id for job in result.jobs] == sorted(held)[:2]
    assert result.job_count == result.jobs_found == 3
    assert result.summary == "dry run: would recover 3 jobs from 1 dead worker"
    exactly = utils.sweep_stale_workers(dataclasses.replace(options, list_limit=3))
    assert len(exactly.jobs) == exactly.jobs_found == 3
    # A real sweep ignores the limit: it reads, recovers and audits every job.
    real = utils.sweep_stale_workers(dataclasses.replace(options, dry_run=False))
    assert [job.id for job in real.jobs] == sorted(held) and real.recovered_count == 3


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "10"])
def test_sweep_stale_workers__bad_list_limit_is_refused(utils, limit):
    with pytest.raises(InvalidJobAction, match="list_limit"):
        utils.sweep_stale_workers(SweepStaleWorkersOptions(dry_run=True, list_limit=limit))


def test_sweep_stale_workers__real_sweep_matches_its_dry_run(utils, jobs):
    register(jobs, "graphile_worker_dead", "20 minutes")
    job = jobs.set(jobs.locked(by="graphile_worker_dead", age="25 minutes"), attempts="3")
    options = SweepStaleWorkersOptions(recovery_delay=timedelta(minutes=2))

    dry = utils.sweep_stale_workers(dataclasses.replace(options, dry_run=True))
    real = utils.sweep_stale_workers(options)

    assert real == dataclasses.replace(dry, dry_run=False, recovered_count=1)
    [planned] = dry.jobs
    after = Job.objects.get(id=job.id)
    assert pick(after, "attempts", "run_at", "locked_at", "locked_by", "last_error") == {
        "attempts": planned.attempts_after,
        "run_at": planned.run_at_after,
        "locked_at": None,
        "locked_by": None,
        "last_error": RECOVERED_ERROR,
    }
    assert after.attempts == 2
    assert registered(jobs) == []


def test_sweep_stale_workers__nothing_to_do(utils, jobs):
    register(jobs, "graphile_worker_alive", "10 seconds")
    jobs.locked(by="graphile_worker_alive", age="1 hour")

    assert utils.sweep_stale_workers() == SweepStaleWorkersResult([], 0, dry_run=False)
    assert registered(jobs) == ["graphile_worker_alive"]


@pytest.mark.embedded
def test_sweep_stale_workers__another_sweeper_holds_the_lock(utils, jobs):
    """Another session holds the sweepers' advisory lock: the sweep reports lock_busy and changes
    nothing. The other session takes only the advisory lock, so it never waits on this test's
    transaction."""
    import psycopg

    from tests.dbconn import server_conninfo

    register(jobs, "graphile_worker_dead", "1 hour")
    jobs.locked(by="graphile_worker_dead", age="1 hour")
    before = snapshot(jobs)
    other = psycopg.connect(
        server_conninfo(),
        autocommit=True,
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s, %s)", list(SWEEP_LOCK_KEY))
        result = utils.sweep_stale_workers()
        # Unlock explicitly: a closed session's backend lets go of its locks a moment after the
        # client has gone, which made the sweep below flaky on a busy machine.
        other.execute("SELECT pg_advisory_unlock(%s, %s)", list(SWEEP_LOCK_KEY))
    finally:
        other.close()

    assert result == SweepStaleWorkersResult([], 0, dry_run=False, lock_busy=True)
    assert result.summary == "another sweeper holds the sweep lock; nothing was checked or changed"
    assert snapshot(jobs) == before
    # The lock is free again: the next sweep runs.
    assert utils.sweep_stale_workers(DRY).worker_ids == ["graphile_worker_dead"]


def test_sweep_stale_workers__needs_the_recovery_extension(utils):
    node_only = WorkerUtils(schema="gw_test_node_only")
    node_only.migrate(recovery=False)  # rolled back with the test's transaction

    with pytest.raises(FeatureUnavailable) as raised:
        node_only.sweep_stale_workers()

    assert str(raised.value).startswith(
        "Schema gw_test_node_only does not have the worker-recovery extension"
    )
    assert "migrate --add-recovery" in str(raised.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SweepStaleWorkersOptions(sweep_threshold=timedelta(0)), "sweep_threshold must be"),
        (SweepStaleWorkersOptions(recovery_delay=timedelta(seconds=-1)), "recovery_delay must"),
        (SweepStaleWorkersOptions(dry_run="yes"), "dry_run must be True or False"),
        ({"dry_run": True}, "options must be a SweepStaleWorkersOptions"),
    ],
)
def test_sweep_stale_workers__refuses_bad_options_before_any_query(
    utils, options, message, django_assert_num_queries
):
    with django_assert_num_queries(0), pytest.raises(InvalidJobAction, match=message):
        utils.sweep_stale_workers(options)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (432, "7m 12s"), (21_600, "6h"), (93_784, "1d 2h 3m 4s")],
)
def test_format_duration(seconds, text):
    assert format_duration(timedelta(seconds=seconds)) == text


# -- cleanup --------------------------------------------------------------------------------------


@pytest.fixture
def litter(utils, jobs) -> dict[str, Any]:
    """Live jobs (one without a queue), a permanently failed one, a locked one with its attempts
    used up, and task and queue rows that no job references any more (one queue locked)."""
    live = jobs.ready("send_email", queue_name="q_live")
    queueless = jobs.ready("send_email")
    failed = jobs.failed("only_failed", queue_name="q_failed")
    running_out = jobs.set(jobs.locked(by="w1", age="1 minute"), attempts="max_attempts")
    gone = [
        jobs.add("old_task", queue_name="q_empty"),
        jobs.add("kept_task", queue_name="q_locked_empty"),
    ]
    utils.complete_jobs([job.id for job in gone])
    jobs.sql(
        f"UPDATE {jobs.q}._private_job_queues SET locked_at = now(), locked_by = 'w1' "
        "WHERE queue_name = 'q_locked_empty'"
    )
    return {"live": live, "queueless": queueless, "failed": failed, "running_out": running_out}


def tasks_left(jobs) -> list[str]:
    return [r[0] for r in jobs.sql(f"SELECT identifier FROM {jobs.q}._private_tasks ORDER BY 1")]


def queues_left(jobs) -> list[str]:
    return [
        r[0] for r in jobs.sql(f"SELECT queue_name FROM {jobs.q}._private_job_queues ORDER BY 1")
    ]


JOB_FIELDS = ("id", "payload", "attempts", "max_attempts", "last_error", "task_id", "job_queue_id")


def test_cleanup__delete_permanently_failed_jobs_returns_the_deleted_rows(utils, jobs, litter):
    result = utils.cleanup([CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS])

    failed = litter["failed"]
    assert result == CleanupResult(
        tasks=(CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS,),
        keep_task_identifiers=(),
        failed_job_ids=[failed.id],
        task_identifiers=[],
        queue_names=[],
        warnings=[],
        deleted_jobs=[failed],
    )
    assert [pick(job, *JOB_FIELDS) for job in result.deleted_jobs] == [pick(failed, *JOB_FIELDS)]
    assert result.summary == "deleted 1 permanently failed job"
    assert sorted(Job.objects.values_list("id", flat=True)) == sorted(
        litter[name].id for name in ("live", "queueless", "running_out")
    )
    assert tasks_left(jobs) == ["kept_task", "old_task", "only_failed", "send_email"]


def test_cleanup__gc_task_identifiers_honours_the_keep_list(utils, jobs, litter):
    result = utils.cleanup(["gc-task-identifiers"], keep_task_identifiers=["kept_task"])

    assert result == CleanupResult(
        tasks=(CleanupTask.GC_TASK_IDENTIFIERS,),
        keep_task_identifiers=("kept_task",),
        failed_job_ids=[],
        task_identifiers=["old_task"],
        queue_names=[],
        warnings=[GC_TASK_IDENTIFIERS_WARNING],
    )
    assert tasks_left(jobs) == ["kept_task", "only_failed", "send_email"]
    assert Job.objects.count() == 4


def test_cleanup__gc_job_queues_with_queueless_jobs_present(utils, jobs, litter):
    """A job without a queue (job_queue_id null) must not stop the GC, as Rust's NOT IN does;
    a locked queue stays even when no job references it."""
    assert Job.objects.filter(job_queue__isnull=True).exists()

    result = utils.cleanup([CleanupTask.GC_JOB_QUEUES])

    assert result == CleanupResult(
        tasks=(CleanupTask.GC_JOB_QUEUES,),
        keep_task_identifiers=(),
        failed_job_ids=[],
        task_identifiers=[],
        queue_names=["q_empty"],
        warnings=[],
    )
    assert queues_left(jobs) == ["q_failed", "q_live", "q_locked_empty"]


def test_cleanup__no_tasks_means_all_three_in_order(utils, jobs, litter):
    """Deleting the failed job first frees the task and queue only it referenced."""
    result = utils.cleanup()

    assert result == CleanupResult(
        tasks=tuple(CleanupTask),
        keep_task_identifiers=(),
        failed_job_ids=[litter["failed"].id],
        task_identifiers=["kept_task", "old_task", "only_failed"],
        queue_names=["q_empty", "q_failed"],
        warnings=[GC_TASK_IDENTIFIERS_WARNING],
        deleted_jobs=[litter["failed"]],
    )
    assert result.summary == ("deleted 1 permanently failed job, 3 task identifiers, 2 queues")
    assert tasks_left(jobs) == ["send_email"]
    assert queues_left(jobs) == ["q_live", "q_locked_empty"]


@pytest.mark.parametrize(
    ("tasks", "keep"),
    [
        ((), ()),
        ((), ("kept_task", "only_failed")),
        ((CleanupTask.GC_JOB_QUEUES, CleanupTask.GC_TASK_IDENTIFIERS), ()),
        ((CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS,), ()),
    ],
)
def test_preview_cleanup__is_what_cleanup_then_does(utils, jobs, litter, tasks, keep):
    before = snapshot(jobs)

    preview = utils.preview_cleanup(tasks, keep_task_identifiers=keep)

    assert snapshot(jobs) == before
    assert type(preview) is CleanupPreview
    result = utils.cleanup(tasks, keep_task_identifiers=keep)
    names = [field.name for field in dataclasses.fields(CleanupPreview)]
    assert {name: getattr(preview, name) for name in names} == {
        name: getattr(result, name) for name in names
    }
    assert result.failed_job_ids == [job.id for job in result.deleted_jobs]
    assert preview.counts == result.counts


def test_preview_cleanup__counts_per_task_asked_for(utils, litter):
    preview = utils.preview_cleanup(["gc-job-queues", "delete-permanently-failed-jobs"])

    assert preview.tasks == (CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS, CleanupTask.GC_JOB_QUEUES)
    assert preview.counts == {
        CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS: 1,
        CleanupTask.GC_JOB_QUEUES: 2,
    }


@pytest.mark.parametrize(
    ("tasks", "keep", "message"),
    [
        (["gc-everything"], (), "Unknown cleanup task 'gc-everything'; choose from"),
        ("gc-job-queues", (), "Cleanup tasks must be given as a list, not str"),
        ((), "send_email", "Task identifiers to keep must be given as a list, not str"),
        ((), [7], "Task identifiers to keep must be text"),
        ((), [""], "A task identifier to keep must not be empty"),
    ],
)
def test_cleanup__refuses_bad_arguments_before_any_query(
    utils, tasks, keep, message, django_assert_num_queries
):
    for call in (utils.cleanup, utils.preview_cleanup):
        with django_assert_num_queries(0), pytest.raises(InvalidJobAction, match=message):
            call(tasks, keep_task_identifiers=keep)


def test_cleanup__no_schema(db):
    missing = WorkerUtils(schema="no_such_worker_schema")
    with pytest.raises(
        FeatureUnavailable, match='no Graphile Worker schema "no_such_worker_schema"'
    ):
        missing.cleanup()
    with pytest.raises(FeatureUnavailable, match="no Graphile Worker schema"):
        missing.preview_cleanup()


def test_sweep_with_config__uses_the_fleets_threshold_and_delay(utils, jobs, worker_schema):
    from worker_admin.utils import WorkerRecoveryConfig

    jobs.sql(f"SELECT {worker_schema}.worker_heartbeat('graphile_worker_cfg')")
    jobs.sql(
        f"UPDATE {worker_schema}._private_workers SET last_heartbeat_at = now() - "
        "interval '3 minutes' WHERE id = 'graphile_worker_cfg'"
    )
    jobs.locked(by="graphile_worker_cfg", age="3 minutes")
    lenient = WorkerRecoveryConfig(sweep_threshold=timedelta(minutes=10))
    assert utils.sweep_stale_workers_with_config(lenient, dry_run=True).worker_ids == []
    strict = WorkerRecoveryConfig(
        sweep_threshold=timedelta(minutes=2), heartbeat_interval=timedelta(seconds=30)
    )
    assert utils.sweep_stale_workers_with_config(strict, dry_run=True).worker_ids == [
        "graphile_worker_cfg"
    ]
    with pytest.raises(InvalidJobAction, match="twice the heartbeat interval"):
        WorkerRecoveryConfig(
            sweep_threshold=timedelta(seconds=40), heartbeat_interval=timedelta(seconds=30)
        ).options()


def test_cleanup__utils_that_know_their_tasks_keep_them(jobs):
    from worker_admin.recovery import CleanupTask

    jobs.sql("INSERT INTO graphile_worker._private_tasks (identifier) VALUES ('known'), ('stale')")
    worker_side = WorkerUtils(task_identifiers=["known"])
    preview = worker_side.preview_cleanup([CleanupTask.GC_TASK_IDENTIFIERS])
    assert preview.task_identifiers == ["stale"]
    assert worker_side.cleanup([CleanupTask.GC_TASK_IDENTIFIERS]).task_identifiers == ["stale"]
    remaining = [
        row[0] for row in jobs.sql("SELECT identifier FROM graphile_worker._private_tasks")
    ]
    assert "known" in remaining and "stale" not in remaining


def test_cleanup__deletes_only_jobs_whose_attempts_equal_max_attempts(utils, jobs):
    """Node and Rust delete `attempts = max_attempts` only: a job whose attempts exceed its
    max_attempts (max_attempts lowered after it failed) is kept, by the preview too."""
    over = jobs.set(jobs.ready(max_attempts=3), attempts="5")
    at_max = jobs.set(jobs.ready(max_attempts=3), attempts="3")
    task = [CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS]

    assert utils.preview_cleanup(task).failed_job_ids == [at_max.id]
    result = utils.cleanup(task)

    assert result.failed_job_ids == [at_max.id]
    assert list(Job.objects.values_list("id", "attempts", "max_attempts")) == [(over.id, 5, 3)]


# -- the Rust knobs: resilient multiplier and flags, inclusive cut-off ----------------------------


def test_sweep_stale_workers__resilient_worker_is_dead_at_exactly_the_multiplied_threshold(
    utils, jobs
):
    """Rust's resilient cut-off is inclusive: a heartbeat exactly threshold × 3 old is dead, a
    microsecond younger is not. The test's transaction fixes now()."""
    register(jobs, "graphile_worker_exact", "15 minutes")
    register(jobs, "graphile_worker_under", "14 minutes 59.999999 seconds")
    for worker_id in ("graphile_worker_exact", "graphile_worker_under"):
        jobs.locked(by=worker_id, age="20 minutes", flags=["infrastructure_resilient"])

    result = utils.sweep_stale_workers(DRY)

    assert result.worker_ids == ["graphile_worker_exact"]
    assert result.reasons == {
        "graphile_worker_exact": "stale heartbeat 15m ago, holds an infrastructure_resilient "
        "job: dead after 15m"
    }
    assert list(result.excluded) == ["graphile_worker_under"]


def test_sweep_with_config__resilient_multiplier_and_flags(utils, jobs):
    from worker_admin.utils import WorkerRecoveryConfig

    assert WorkerRecoveryConfig().resilient_sweep_threshold_multiplier == 3
    assert WorkerRecoveryConfig().resilient_job_flags == ["infrastructure_resilient"]
    assert SweepStaleWorkersOptions().resilient_job_flags == ["infrastructure_resilient"]
    register(jobs, "graphile_worker_long", "10 minutes")
    register(jobs, "graphile_worker_infra", "10 minutes")
    jobs.locked(by="graphile_worker_long", age="11 minutes", flags=["long_running"])
    jobs.locked(by="graphile_worker_infra", age="11 minutes", flags=["infrastructure_resilient"])
    config = WorkerRecoveryConfig(
        resilient_sweep_threshold_multiplier=2, resilient_job_flags=["long_running", "video"]
    )

    at_ten = utils.sweep_stale_workers_with_config(config, dry_run=True)

    assert at_ten.reasons == {
        "graphile_worker_infra": "stale heartbeat 10m ago",
        "graphile_worker_long": "stale heartbeat 10m ago, holds a job flagged long_running or "
        "video: dead after 10m",
    }
    set_heartbeat(jobs, "graphile_worker_long", "9 minutes 59 seconds")
    at_nine = utils.sweep_stale_workers_with_config(config, dry_run=True)
    assert at_nine.excluded == {
        "graphile_worker_long": "stale heartbeat 9m 59s ago, but holds a job flagged "
        "long_running or video: dead only after 10m"
    }
    no_flags = dataclasses.replace(config, resilient_job_flags=[])
    assert utils.sweep_stale_workers_with_config(no_flags, dry_run=True).worker_ids == [
        "graphile_worker_infra",
        "graphile_worker_long",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resilient_sweep_threshold_multiplier": 0}, "multiplier must be a whole number"),
        ({"resilient_sweep_threshold_multiplier": 1.5}, "multiplier must be a whole number"),
        ({"resilient_job_flags": "infrastructure_resilient"}, "must be a list of flag names"),
        ({"resilient_job_flags": [""]}, "non-empty flag names"),
        ({"resilient_job_flags": [3]}, "non-empty flag names"),
    ],
)
def test_sweep_stale_workers__bad_resilience_options_refused_before_any_query(
    utils, changes, message, django_assert_num_queries
):
    from worker_admin.utils import WorkerRecoveryConfig

    with django_assert_num_queries(0):
        with pytest.raises(InvalidJobAction, match=message):
            utils.sweep_stale_workers(SweepStaleWorkersOptions(dry_run=True, **changes))
        with pytest.raises(InvalidJobAction, match=message):
            WorkerRecoveryConfig(**changes).options()


# -- superseded jobs: never revived ---------------------------------------------------------------


def held_since(jobs, job: Job, by: str, minutes: int, **columns: str) -> Job:
    """Added `minutes + 1` minutes ago, taken by `by` `minutes` ago (updated_at is the add time:
    taking a job never touches it)."""
    return jobs.set(
        job,
        created_at=f"now() - interval '{minutes + 1} minutes'",
        updated_at=f"now() - interval '{minutes + 1} minutes'",
        locked_at=f"now() - interval '{minutes} minutes'",
        locked_by=f"'{by}'",
        attempts="attempts + 1",
        **columns,
    )


@pytest.fixture
def superseded(utils, jobs) -> dict[str, Job]:
    return build_superseded(utils, jobs)


def build_superseded(utils, jobs) -> dict[str, Job]:
    """A dead worker holding: a keyed job whose key was replaced by add_job while it was dead,
    one whose key remove_job took, a plain job, and a keyless job on its last attempt (which
    looks like a superseded one but for updated_at, and must still be recovered)."""
    dead = "graphile_worker_dead"
    register(jobs, dead, "20 minutes")
    replaced = held_since(jobs, jobs.add(job_key="nightly", payload={"v": 1}), dead, 25)
    removed = held_since(jobs, jobs.add(job_key="gone"), dead, 25)
    plain = held_since(jobs, jobs.add(), dead, 25)
    last_try = held_since(jobs, jobs.add(max_attempts=1), dead, 25)
    replacement = utils.add_raw_job("send_email", {"v": 2}, JobSpec(job_key="nightly"))
    assert utils.remove_job("gone").detached.id == removed.id
    # Each call above stamped the test transaction's one now(); in life the removal is another
    # transaction, with another now(), so no job's created_at matches it.
    jobs.set(removed, updated_at="now() - interval '10 seconds'")
    return {
        "replaced": Job.objects.get(id=replaced.id),
        "removed": Job.objects.get(id=removed.id),
        "plain": plain,
        "last_try": last_try,
        "replacement": replacement,
    }


def test_sweep_stale_workers__superseded_job_is_only_unlocked_and_stays_failed(
    utils, jobs, superseded
):
    replaced, removed = superseded["replaced"], superseded["removed"]
    plain, last_try = superseded["plain"], superseded["last_try"]
    replacement = superseded["replacement"]
    assert (replaced.key, replaced.attempts, replaced.max_attempts) == (None, 25, 25)
    options = SweepStaleWorkersOptions(recovery_delay=timedelta(seconds=30))
    now = db_now(jobs)

    dry = utils.sweep_stale_workers(dataclasses.replace(options, dry_run=True))

    unchanged = {"attempts_after": 25, "superseded": True}
    assert [
        (job.id, job.plan, job.attempts_after, job.run_at_after == job.run_at) for job in dry.jobs
    ] == [
        (replaced.id, f"superseded by job {replacement.id}", 25, True),
        (removed.id, "superseded (key replaced)", 25, True),
        (plain.id, "recover", 0, False),
        (last_try.id, "recover", 0, False),
    ]
    assert {k: getattr(dry.jobs[0], k) for k in unchanged} == unchanged
    assert dry.jobs[0].replaced_by == replacement.id and dry.jobs[1].replaced_by is None
    assert dry.superseded_count == 2
    assert dry.summary == (
        "dry run: would recover 2 jobs from 1 dead worker; 2 superseded jobs would be unlocked "
        "and left failed"
    )

    real = utils.sweep_stale_workers(options)

    assert real == dataclasses.replace(dry, dry_run=False, recovered_count=2)
    assert real.changed_job_ids == [replaced.id, removed.id, plain.id, last_try.id]
    assert real.summary == (
        "recovered 2 jobs from 1 dead worker; 2 superseded jobs unlocked and left failed"
    )
    after = {job.id: job for job in Job.objects.with_state()}
    for job in (replaced, removed):
        assert (after[job.id].state, after[job.id].attempts, after[job.id].locked_by) == (
            "failed",
            25,
            None,
        )
        assert (after[job.id].run_at, after[job.id].last_error) == (job.run_at, job.last_error)
    assert [(after[j.id].state, after[j.id].attempts) for j in (plain, last_try)] == [
        ("scheduled", 0),  # after the recovery delay
        ("scheduled", 0),
    ]
    assert after[plain.id].run_at == now + timedelta(seconds=30)
    # The replacement is the only runnable copy of the "nightly" payload.
    assert after[replacement.id].state == "ready" and after[replacement.id].payload == {"v": 2}


def test_sweep_stale_workers__dry_run_list_limit_counts_superseded_jobs_beyond_the_list(
    utils, superseded
):
    dry = utils.sweep_stale_workers(SweepStaleWorkersOptions(dry_run=True, list_limit=1))

    assert (len(dry.jobs), dry.jobs_found, dry.superseded_count) == (1, 4, 2)
    assert dry.summary.startswith("dry run: would recover 2 jobs from 1 dead worker; 2 superseded")
