"""WorkerUtils bound to a schema that is not GRAPHILE_WORKER_SCHEMA works on that schema only,
for every method: its reads, the rows its writes return (`job.task`, `job.job_queue` included),
the sweep and the cleanups. The second schema has a mixed-case name and sits beside the default
one, installed by our own migrate; both hold jobs with the same ids, tasks and keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import JobFactory, truncate_worker_data
from worker_admin.audit import job_image
from worker_admin.recovery import CleanupTask, SweepStaleWorkersOptions
from worker_admin.utils import JobSpec, RawJobSpec, RescheduleJobOptions, WorkerUtils

OTHER = "Other-Schema"


def rows(jobs: JobFactory) -> list[tuple]:
    return jobs.sql(
        f"SELECT j.id, t.identifier, j.attempts, j.max_attempts, j.key, j.locked_by "
        f"FROM {jobs.q}._private_jobs j JOIN {jobs.q}._private_tasks t ON t.id = j.task_id "
        "ORDER BY j.id"
    )


@pytest.fixture
def default(utils) -> JobFactory:
    """The settings' schema, emptied with its identities restarted (rolled back after)."""
    truncate_worker_data(utils.alias, utils.schema)
    factory = JobFactory(utils)
    factory.add("default_task", queue_name="q_default")  # task 1, queue 1, job 1
    factory.add("default_task", job_key="k")  # job 2
    return factory


@pytest.fixture
def other(default) -> JobFactory:
    utils = WorkerUtils(default.utils.alias, OTHER)
    utils.migrate()  # rolled back with the test's transaction
    factory = JobFactory(utils)
    factory.add("other_task", queue_name="q_other")  # task 1, queue 1, job 1: same ids
    factory.add("other_task", job_key="k")  # job 2
    return factory


def test_worker_utils__other_schema_adds_there_and_returns_its_rows(default, other):
    before = rows(default)
    utils = other.utils

    one = utils.add_raw_job("other_task", {"n": 3}, JobSpec(queue_name="q_other"))
    batch = utils.add_raw_jobs([RawJobSpec("other_task", {"n": 4}, JobSpec())])
    items = utils.add_batch_job("other_task", [1, 2])

    assert [one.id, batch[0].id, items.id] == [3, 4, 5]
    assert (one.task.identifier, one.job_queue.queue_name) == ("other_task", "q_other")
    assert batch[0].task.identifier == items.task.identifier == "other_task"
    assert [row[:2] for row in rows(other)] == [(n, "other_task") for n in range(1, 6)]
    assert rows(default) == before


def test_worker_utils__other_schema_job_actions_touch_only_it(default, other):
    before = rows(default)
    utils = other.utils

    completed = utils.complete_jobs([1])
    failed = utils.permanently_fail_jobs([2], "gone")
    rescheduled = utils.reschedule_jobs([2], RescheduleJobOptions(attempts=0))
    removed = utils.remove_job("k")

    assert [job.task.identifier for job in completed.changed] == ["other_task"]
    assert completed.changed[0].job_queue.queue_name == "q_other"
    assert (failed.changed_ids, rescheduled.changed_ids) == ((2,), (2,))
    assert removed.removed.id == 2 and removed.removed.task.identifier == "other_task"
    assert rows(other) == []
    assert rows(default) == before


def test_worker_utils__other_schema_lists_its_workers(default, other):
    for factory, worker_id in ((default, "graphile_worker_default"), (other, "graphile_worker_o")):
        factory.sql(
            f"INSERT INTO {factory.q}._private_workers (id, last_heartbeat_at) VALUES (%s, now())",
            [worker_id],
        )

    assert [w.id for w in other.utils.list_active_workers()] == ["graphile_worker_o"]
    assert [w.id for w in default.utils.list_active_workers()] == ["graphile_worker_default"]


def test_worker_utils__other_schema_sweeps_unlocks_and_cleans_only_it(default, other):
    for factory in (default, other):
        factory.sql(
            f"INSERT INTO {factory.q}._private_workers (id, last_heartbeat_at) "
            "VALUES ('graphile_worker_dead', now() - interval '1 hour')"
        )
        factory.set(1, locked_by="'graphile_worker_dead'", locked_at="now() - interval '1 hour'")
        factory.set(2, locked_by="'graphile_worker_held'", locked_at="now() - interval '1 minute'")
    before = rows(default)
    utils = other.utils

    sweep = utils.sweep_stale_workers(SweepStaleWorkersOptions(recovery_delay=timedelta(0)))
    unlocked = utils.force_unlock_workers(["graphile_worker_held"])
    utils.permanently_fail_jobs([1, 2], "done with it")
    preview = utils.preview_cleanup([CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS])
    cleaned = utils.cleanup([CleanupTask.DELETE_PERMANENTLY_FAILED_JOBS])

    assert (sweep.worker_ids, sweep.recovered_count) == (["graphile_worker_dead"], 1)
    assert [job.task_identifier for job in sweep.jobs] == ["other_task"]
    assert unlocked.jobs_unlocked == [2]
    assert preview.failed_job_ids == cleaned.failed_job_ids == [1, 2]
    images = [job_image(job) for job in cleaned.deleted_jobs]
    assert [(i["task_identifier"], i["queue_name"]) for i in images] == [
        ("other_task", "q_other"),
        ("other_task", None),
    ]
    assert rows(other) == []
    assert rows(default) == before
    registered = f"SELECT id FROM {default.q}._private_workers"
    assert default.sql(registered) == [("graphile_worker_dead",)]
