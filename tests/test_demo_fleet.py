"""The simulated demo fleet: workers register, heartbeat, lock and process demo jobs like real
workers, and a killed one leaves a stale registration and its lock behind.

The workers use their own connections, so every row here is committed (`worker_rows`); waits
are bounded polls, never long sleeps."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import pytest
from django.core.management import CommandError, call_command

from worker_admin.demo.fleet import FleetRefused, Refiller, SimulatedWorker, check_demo_database
from worker_admin.demo.seed import ERRORS, TASKS

FAST = {"heartbeat_seconds": 0.2, "work_seconds": (0.01, 0.05), "idle_seconds": 0.05}
SLOW_WORK = {"heartbeat_seconds": 0.2, "work_seconds": (60.0, 60.0), "idle_seconds": 0.05}


def poll(check: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "timed out waiting"
            return result
        time.sleep(0.02)


@pytest.fixture
def start(worker_rows):
    """Start simulated workers; whatever still runs is stopped before the rows are truncated."""
    started: list[SimulatedWorker] = []

    def _start(**options) -> SimulatedWorker:
        worker = SimulatedWorker(**options).start()
        started.append(worker)
        assert worker.registered.wait(5), worker.last_error
        return worker

    yield _start
    for worker in started:
        worker.kill(timeout=5)


def job_row(jobs, job_id: int) -> dict | None:
    rows = jobs.sql(
        f"SELECT locked_by, locked_at IS NOT NULL, attempts, last_error, run_at, updated_at "
        f"FROM {jobs.q}._private_jobs WHERE id = %s",
        [job_id],
    )
    if not rows:
        return None
    keys = ["locked_by", "locked", "attempts", "last_error", "run_at", "updated_at"]
    return dict(zip(keys, rows[0], strict=True))


def queue_holder(jobs, name: str) -> str | None:
    return jobs.sql(
        f"SELECT locked_by FROM {jobs.q}._private_job_queues WHERE queue_name = %s", [name]
    )[0][0]


def worker_row(jobs, worker_id: str) -> tuple | None:
    rows = jobs.sql(
        f"SELECT last_heartbeat_at, started_at, metadata FROM {jobs.q}._private_workers "
        "WHERE id = %s",
        [worker_id],
    )
    return rows[0] if rows else None


def held_by(jobs, worker_id: str) -> list[int]:
    return [
        row[0]
        for row in jobs.sql(
            f"SELECT id FROM {jobs.q}._private_jobs WHERE locked_by = %s", [worker_id]
        )
    ]


def test_simulated_worker__registers_heartbeats_and_locks_the_first_ready_job(start, jobs):
    low = jobs.ready("send_email", priority=5)
    first = jobs.ready("resize_image", priority=-5)
    jobs.scheduled("resize_image", priority=-10)
    jobs.ready("resize_image", priority=-5)  # a later run_at than `first`
    jobs.set(first, run_at="now() - interval '2 minutes'")
    worker = start(**SLOW_WORK)

    assert worker.id.startswith("graphile_worker_") and len(worker.id) == 26
    heartbeat, _started, metadata = worker_row(jobs, worker.id)
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    assert metadata["simulated"] is True and metadata["pid"] > 0 and metadata["hostname"]
    assert poll(lambda: held_by(jobs, worker.id)) == [first.id]
    assert job_row(jobs, first.id)["attempts"] == 1
    assert job_row(jobs, low.id)["locked"] is False
    poll(lambda: worker_row(jobs, worker.id)[0] > heartbeat)  # heartbeats while working


def test_simulated_worker__stop_releases_its_job_and_deregisters(start, jobs):
    job = jobs.ready("send_email", queue_name="emails")
    worker = start(**SLOW_WORK)
    poll(lambda: held_by(jobs, worker.id))
    assert queue_holder(jobs, "emails") == worker.id

    worker.stop(timeout=5)

    assert not worker.alive and worker.last_error is None
    assert worker_row(jobs, worker.id) is None
    row = job_row(jobs, job.id)
    assert row["locked"] is False and row["locked_by"] is None and row["attempts"] == 0
    assert queue_holder(jobs, "emails") is None


def test_simulated_worker__completes_jobs_and_unlocks_their_queue(start, jobs):
    queued = jobs.ready("send_email", queue_name="emails")
    plain = jobs.ready("resize_image")
    worker = start(failure_rate=0.0, **FAST)

    poll(lambda: job_row(jobs, queued.id) is None and job_row(jobs, plain.id) is None)
    assert queue_holder(jobs, "emails") is None
    assert poll(lambda: worker.completed == 2) and worker.failed == 0
    worker.stop(timeout=5)
    assert worker_row(jobs, worker.id) is None


def test_simulated_worker__failure_records_error_and_backoff(start, jobs):
    job = jobs.ready("send_email", queue_name="emails", max_attempts=1)  # not retried after
    worker = start(failure_rate=1.0, **FAST)

    row = poll(lambda: (r := job_row(jobs, job.id)) and r["last_error"] and r)
    assert row["attempts"] == 1 and row["locked"] is False and row["locked_by"] is None
    templates = [e.split("{n}")[0][:20] for e in ERRORS["send_email"]]
    assert any(row["last_error"].startswith(t) for t in templates)
    # run_at was in the past, so the retry is due exp(1) seconds after the failure.
    backoff = (row["run_at"] - row["updated_at"]).total_seconds()
    assert backoff == pytest.approx(math.exp(1), abs=0.01)
    assert queue_holder(jobs, "emails") is None
    assert poll(lambda: worker.failed == 1) and worker.completed == 0


def test_simulated_worker__skips_jobs_of_a_locked_queue(start, jobs):
    blocked = jobs.ready("send_email", queue_name="emails", priority=-5)
    jobs.sql(
        f"UPDATE {jobs.q}._private_job_queues SET locked_at = now(), "
        "locked_by = 'graphile_worker_other00001' WHERE queue_name = 'emails'"
    )
    free = jobs.ready("resize_image", priority=5)
    worker = start(**SLOW_WORK)

    assert poll(lambda: held_by(jobs, worker.id)) == [free.id]
    assert job_row(jobs, blocked.id)["locked"] is False
    assert queue_holder(jobs, "emails") == "graphile_worker_other00001"


def test_simulated_worker__never_touches_non_demo_tasks(start, jobs):
    foreign = jobs.ready("real_billing_task", priority=-100)
    demo = jobs.ready("send_email")
    worker = start(**SLOW_WORK)

    assert poll(lambda: held_by(jobs, worker.id)) == [demo.id]
    assert job_row(jobs, foreign.id)["locked"] is False


def test_simulated_worker__kill_leaves_registration_and_lock(start, jobs):
    job = jobs.ready("send_email", queue_name="emails")
    worker = start(**SLOW_WORK)
    poll(lambda: held_by(jobs, worker.id))

    worker.kill(timeout=5)

    assert not worker.alive and worker.crashed
    heartbeat = worker_row(jobs, worker.id)[0]
    assert job_row(jobs, job.id)["locked_by"] == worker.id
    assert queue_holder(jobs, "emails") == worker.id
    time.sleep(0.5)  # more than two heartbeat periods: none arrives
    assert worker_row(jobs, worker.id)[0] == heartbeat


def test_refiller__adds_demo_jobs(worker_rows, utils, jobs):
    refiller = Refiller(utils, jobs_per_second=40, interval=0.05).start()
    try:
        poll(lambda: refiller.added >= 5)
    finally:
        refiller.stop(timeout=5)
    tasks = jobs.sql(
        f"SELECT DISTINCT t.identifier FROM {jobs.q}._private_jobs j "
        f"JOIN {jobs.q}._private_tasks t ON t.id = j.task_id"
    )
    assert tasks and {row[0] for row in tasks} <= set(TASKS)


def test_demo_workers_command__refuses_non_demo_data(worker_rows, jobs):
    jobs.ready("real_billing_task")
    with pytest.raises(CommandError, match="this database has non-demo jobs") as refused:
        call_command("graphile_worker", "demo-workers", "--duration", "0.1")
    assert str(refused.value).endswith("Non-demo tasks: real_billing_task (--force to run anyway)")
    assert job_row(jobs, jobs.sql(f"SELECT id FROM {jobs.q}._private_jobs")[0][0])["attempts"] == 0


def test_demo_workers_command__runs_crashes_one_and_stops_cleanly(worker_rows, jobs, capsys):
    jobs.ready("generate_report", queue_name="reports")
    call_command(
        "graphile_worker",
        "demo-workers",
        "--workers=2",
        "--heartbeat=0.2",
        "--jobs-per-second=0",
        "--duration=1",
        "--crash-one-after=0.3",
    )
    out = capsys.readouterr().out
    assert out.count("started graphile_worker_") == 2
    assert out.count("crashed graphile_worker_") == 1
    registered = jobs.sql(f"SELECT id FROM {jobs.q}._private_workers")
    assert len(registered) == 1 and f"crashed {registered[0][0]}" in out
    assert "Demo workers stopped" in out


def test_demo_fleet__refusal_names_no_option_demo_lacks(worker_rows, jobs):
    """`demo` prints this refusal too, and has no --force: only demo-workers offers it."""
    jobs.ready("real_billing_task")
    with pytest.raises(FleetRefused) as refused:
        check_demo_database()
    assert "--force" not in str(refused.value)
