"""Recovery interop with the real graphile-worker npm package (0.18.0): a Node worker killed
mid-job (SIGKILL, so no graceful release) leaves its job locked by its pool id; the Workers page
shows that id as an unregistered "Node pool" lock holder, and force-unlock from the console frees
exactly its job, leaving another worker's lock alone.

The Node process needs committed rows, so this uses `worker_rows` (transactional; the worker
tables are truncated afterwards). The task `interop_recovery_long`
(tests/node/interop/tasks/interop_recovery_long.cjs) sleeps for a minute; no other interop test
adds a job for it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from tests.nodejs import ensure_graphile_worker
from tests.test_interop import (
    INTEROP_DIR,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    node_database_url,
    sql,
    wait_for,
    worker_schema,
)
from worker_admin.audit import AuditEntry
from worker_admin.installer import quote_schema
from worker_admin.models import Job
from worker_admin.roles import ensure_groups
from worker_admin.utils import JobSpec, WorkerUtils

pytestmark = [pytest.mark.node, pytest.mark.embedded]

LONG_TASK = "interop_recovery_long"
# A task no Node worker here knows, whose job is locked by SQL on behalf of an unrelated worker.
BYSTANDER_TASK = "interop_recovery_bystander"
OTHER_WORKER = "graphile_worker_5ca1ab1e"  # a Rust-looking id
# Node 0.17+ locks jobs with its pool id.
POOL_ID = re.compile(r"^(ot)?pool-[0-9a-f]+$")


def start_node_worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    """A long-running `graphile-worker` (no --once) running one job at a time."""
    cli = ensure_graphile_worker()
    env_overrides = {"DATABASE_URL": database_url, "GRAPHILE_WORKER_SCHEMA": worker_schema()}
    command = [
        str(cli),
        "--connection",
        database_url,
        "--schema",
        worker_schema(),
        "--jobs",
        "1",
    ]
    with open(log, "wb") as log_file:
        return subprocess.Popen(
            command,
            cwd=INTEROP_DIR,
            env={**os.environ, **env_overrides},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL (a crash: the worker releases nothing) and reap the process."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=STOP_TIMEOUT)


def test_node_worker__killed_mid_job_shows_as_lock_holder_and_force_unlock_frees_its_jobs(
    worker_rows, client, django_user_model, tmp_path: Path
) -> None:
    utils = WorkerUtils()
    bystander = utils.add_raw_job(BYSTANDER_TASK, {"role": "bystander"})
    sql(
        f"UPDATE {quote_schema(worker_schema())}._private_jobs"
        " SET locked_by = %s, locked_at = now() WHERE id = %s",
        [OTHER_WORKER, bystander.id],
    )
    long_job = utils.add_raw_job(LONG_TASK, {"role": "killed mid-job"})

    log = tmp_path / "worker.log"
    process = start_node_worker(node_database_url(), log)
    try:

        def pool_holding_the_long_job() -> str | None:
            locked_by = Job.objects.filter(id=long_job.id).values_list("locked_by", flat=True)
            holder = next(iter(locked_by), None)
            return holder if holder and POOL_ID.match(holder) else None

        pool_id = wait_for(
            pool_holding_the_long_job,
            timeout=STARTUP_TIMEOUT,
            what=f"job {long_job.id} to be locked by a Node pool",
            process=process,
            log=log,
        )
    finally:
        kill(process)  # also when the wait failed: never leave the Node process behind
    assert process.returncode == -signal.SIGKILL

    # The crash released nothing: the job is still locked, on its first attempt.
    held = Job.objects.get(id=long_job.id)
    assert (held.locked_by, held.locked_at is not None, held.attempts) == (pool_id, True, 1)

    ensure_groups()  # an earlier transactional test may have flushed the role groups
    admin = django_user_model.objects.create_user("ada", password="pw-123456789")
    admin.groups.add(Group.objects.get(name="admin"))
    client.force_login(admin)

    page = client.get("/workers/")
    assert page.status_code == 200
    holders = {holder.id: holder for holder in page.context["fleet"].holders}
    assert set(holders) == {pool_id, OTHER_WORKER}
    node_pool = holders[pool_id]
    assert (
        node_pool.kind,
        node_pool.registered,
        node_pool.stale,
        node_pool.jobs_held,
        node_pool.queues_held,
    ) == ("Node pool", False, None, 1, 0)
    assert list(Job.objects.filter(locked_by=pool_id).values_list("id", flat=True)) == [long_job.id]
    other = holders[OTHER_WORKER]
    assert (other.kind, other.registered, other.jobs_held) == ("Rust worker", False, 1)

    preview = client.post("/maintenance/force-unlock/", {"worker_ids": pool_id})
    assert preview.status_code == 200
    shown = preview.context["p"]
    assert [row.id for row in shown.rows] == shown.job_ids == [long_job.id]
    assert shown.queue_names == []
    assert shown.fresh == []  # a Node pool never heartbeats
    token = re.search(r'name="token" value="([^"]+)"', preview.content.decode()).group(1)
    assert Job.objects.get(id=long_job.id).locked_by == pool_id  # the preview changed nothing

    done = client.post("/maintenance/force-unlock/", {"token": token, "reason": "pool killed"})
    assert (done.status_code, done["Location"]) == (302, "/workers/")

    freed = Job.objects.get(id=long_job.id)
    assert (freed.locked_at, freed.locked_by, freed.attempts) == (None, None, 1)
    untouched = Job.objects.get(id=bystander.id)
    assert (untouched.locked_by, untouched.locked_at is not None) == (OTHER_WORKER, True)

    entry = AuditEntry.objects.get(action="force_unlock", outcome="done")
    assert entry.changed_ids == [long_job.id]
    assert entry.parameters["worker_ids"] == [pool_id]


def test_sweep__superseded_job_stays_failed_and_a_real_node_worker_runs_the_replacement_once(
    worker_rows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead Rust-looking worker held a keyed job; the key was re-added while it was dead, so
    add_job gave up the old job (key cleared, attempts used up) and made a new one. The dry run
    names the replacement, the sweep only unlocks the old job, and a real Node worker then runs
    the new payload once and the old one never."""
    from datetime import timedelta

    from tests.nodejs import run_graphile_worker
    from tests.test_interop import recorded_runs
    from worker_admin.recovery import SweepStaleWorkersOptions

    utils = WorkerUtils()
    q = quote_schema(worker_schema())
    dead = "graphile_worker_0dead0"
    old = utils.add_raw_job("record", {"version": 1}, JobSpec(job_key="interop-superseded"))
    sql(
        f"INSERT INTO {q}._private_workers (id, last_heartbeat_at) "
        "VALUES (%s, now() - interval '20 minutes')",
        [dead],
    )
    sql(  # added 21 minutes ago, taken a minute later (taking a job leaves updated_at alone)
        f"UPDATE {q}._private_jobs SET created_at = now() - interval '21 minutes', "
        "updated_at = now() - interval '21 minutes', locked_at = now() - interval '20 minutes', "
        "locked_by = %s, attempts = 1 WHERE id = %s",
        [dead, old.id],
    )
    new = utils.add_raw_job("record", {"version": 2}, JobSpec(job_key="interop-superseded"))
    assert new.id != old.id
    options = SweepStaleWorkersOptions(recovery_delay=timedelta(0))

    dry = utils.sweep_stale_workers(SweepStaleWorkersOptions(dry_run=True))
    [planned] = dry.jobs
    assert (planned.id, planned.plan) == (old.id, f"superseded by job {new.id}")
    real = utils.sweep_stale_workers(options)
    assert (real.jobs, real.recovered_count, real.superseded_count) == (dry.jobs, 0, 1)

    output = tmp_path / "runs.jsonl"
    monkeypatch.setenv("INTEROP_OUTPUT", str(output))
    run_graphile_worker(
        node_database_url(), worker_schema(), ["--once", "--jobs", "1"], cwd=INTEROP_DIR
    )

    runs = recorded_runs(output)
    assert [(int(run["id"]), run["payload"]) for run in runs] == [(new.id, {"version": 2})]
    left = Job.objects.with_state().get(id=old.id)
    assert (left.state, left.locked_by, left.attempts, left.key) == ("failed", None, 25, None)
    assert not Job.objects.filter(id=new.id).exists()  # ran and completed
