"""Interop with the real graphile-worker npm package (0.18.0), both ways, in the Django test
database.

- Ours -> Node: on the schema our migrate installed (tests/conftest.py), jobs added through
  WorkerUtils are run by a real Node worker (`graphile-worker --once`, tasks in
  tests/node/interop/tasks) exactly once with the payload we stored; completed jobs disappear and
  a failing job keeps its attempt and error. A long-running Node worker polling only once a minute
  picks up a job within seconds because our add_job sends the `jobs:insert` NOTIFY it listens to.
- Node -> ours: on a schema installed by the real CLI (`--schema-only`), jobs created by the real
  Node API (tests/node/interop/add_jobs.mjs) are read column for column by our models; our
  capability detection calls the schema "node" and our migrate adds only the recovery extension.

The Node processes need committed rows, so these tests use `transactional_db`; the `worker_rows`
fixture truncates the worker tables afterwards (data only) and the real-schema fixture puts our
own schema back, so the rest of the suite finds an empty queue on our schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.db import connections

from tests.nodejs import (
    CLI_TIMEOUT,
    NODE_DIR,
    ensure_graphile_worker,
    install_real_schema,
    postgres_url,
    run_graphile_worker,
)
from worker_admin.installer import Flavour, MigrateResult, quote_schema
from worker_admin.models import Job, JobQueue, Task
from worker_admin.schema import clear_capabilities_cache, detect
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

pytestmark = [pytest.mark.node, pytest.mark.embedded]

T = TypeVar("T")

# The Node worker's working directory: the CLI loads ./tasks and ./graphile.config.mjs from it.
INTEROP_DIR = NODE_DIR / "interop"
ADD_JOBS_SCRIPT = INTEROP_DIR / "add_jobs.mjs"
# libpq parameters worth passing on to node-postgres (it understands these in the URL query).
SSL_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
# Bounded waits for the long-running worker, in seconds.
STARTUP_TIMEOUT = 30.0
NOTIFY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Node's retry backoff after a first failure is exp(1) ≈ 2.72 s (GRAPHILE_WORKER.md §3).
FIRST_RETRY_BACKOFF = timedelta(seconds=2)

# A payload that would expose any re-encoding on the way: non-ASCII text, escapes, nesting,
# every JSON scalar and the largest integer a JavaScript number holds exactly.
RICH_PAYLOAD = {
    "text": "héllo wörld ✓ 🚀",
    "quoted": 'say "hi"\n\tand leave',
    "nested": {"list": [1, 2.5, None, True, False, "x"], "empty": {}, "none": None},
    "largest_safe_integer": 9_007_199_254_740_991,
}


# --- database helpers -----------------------------------------------------------------------


def worker_alias() -> str:
    return settings.WORKER_DATABASE


def worker_schema() -> str:
    return settings.GRAPHILE_WORKER_SCHEMA


def sql(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connections[worker_alias()].cursor() as cursor:
        cursor.execute(statement, params or [])
        return cursor.fetchall() if cursor.description else []


def database_now() -> datetime:
    return sql("SELECT now()")[0][0]


def to_milliseconds(moment: datetime) -> datetime:
    """A JavaScript Date holds milliseconds: requested times must survive the round trip."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def node_database_url(**extra: str) -> str:
    """A postgresql:// URL for node-postgres naming the database Django's tests use.

    During the tests settings_dict["NAME"] is the test database. HOST may be a Unix-socket
    directory (the embedded PostgreSQL in .pgdata/); postgres_url encodes it the way
    node-postgres expects.
    """
    settings_dict = connections[worker_alias()].settings_dict
    options = settings_dict.get("OPTIONS") or {}
    params = {
        "user": settings_dict.get("USER") or "",
        "password": settings_dict.get("PASSWORD") or "",
        "host": settings_dict.get("HOST") or "",
        "port": str(settings_dict.get("PORT") or ""),
        "dbname": settings_dict["NAME"],
        **{key: str(options[key]) for key in SSL_OPTIONS if options.get(key)},
        **extra,
    }
    return postgres_url({key: value for key, value in params.items() if value})


def node_listener_ready(application_name: str) -> bool:
    """True once the Node worker's LISTEN has run: its listening connection is then idle with
    the LISTEN as its last statement (the worker logs "looking for jobs" before that)."""
    return sql(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s AND state = 'idle'"
        " AND starts_with(query, 'LISTEN \"jobs:insert\"'))",
        [application_name],
    )[0][0]


# --- Node helpers ---------------------------------------------------------------------------


def recorded_runs(output: Path) -> list[dict[str, Any]]:
    """The jobs the `record` task ran, one JSON line each; a line still being written is left
    for the next look."""
    if not output.exists():
        return []
    complete_lines = output.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in complete_lines]


def run_add_jobs(database_url: str, request: dict[str, Any]) -> dict[str, list[int]]:
    """Create jobs with the real Node API (tests/node/interop/add_jobs.mjs); returns their ids."""
    ensure_graphile_worker()
    env = {**os.environ, "DATABASE_URL": database_url, "GRAPHILE_WORKER_SCHEMA": worker_schema()}
    result = subprocess.run(
        ["node", str(ADD_JOBS_SCRIPT)],
        input=json.dumps(request),
        cwd=INTEROP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"add_jobs.mjs failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    ids = json.loads(result.stdout)
    return {group: [int(job_id) for job_id in job_ids] for group, job_ids in ids.items()}


@contextmanager
def running_node_worker(
    database_url: str, output: Path, log: Path, args: list[str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A long-running `graphile-worker` process (no --once), stopped when the block ends."""
    cli = ensure_graphile_worker()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GRAPHILE_WORKER_SCHEMA": worker_schema(),
        "INTEROP_OUTPUT": str(output),
    }
    command = [str(cli), "--connection", database_url, "--schema", worker_schema(), *args]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=INTEROP_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.terminate()  # SIGTERM: graphile-worker shuts down gracefully
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def wait_for(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes],
    log: Path,
) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds or as soon
    as the Node process has exited, showing its output."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail(
                f"the Node worker exited ({process.returncode}) while waiting for {what}:\n"
                + log.read_text(errors="replace")
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"waited {timeout:.0f} s for {what}; Node worker output:\n"
                + log.read_text(errors="replace")
            )
        time.sleep(0.05)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def node_cli() -> Path:
    """The real CLI, installed with `npm ci` when needed (skips without Node, fails on CI)."""
    return ensure_graphile_worker()


@pytest.fixture
def real_node_schema(worker_rows, node_cli) -> Iterator[str]:
    """Replace our schema with one the real CLI installs; put ours back afterwards.

    Yields the Node connection URL. Teardown drops the real schema and reinstalls ours with
    migrate(recovery=True), as the session fixture did, so later tests find our schema again.
    """
    qschema = quote_schema(worker_schema())
    database_url = node_database_url()
    sql(f"DROP SCHEMA {qschema} CASCADE")
    clear_capabilities_cache()
    try:
        install_real_schema(database_url, worker_schema())
        yield database_url
    finally:
        sql(f"DROP SCHEMA IF EXISTS {qschema} CASCADE")
        WorkerUtils().migrate(recovery=True)
        clear_capabilities_cache()


# --- ours -> Node ---------------------------------------------------------------------------


def test_node_worker__runs_jobs_added_through_our_api_once_with_their_payloads(
    worker_rows, node_cli: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    utils = WorkerUtils()
    now = database_now()

    plain = utils.add_raw_job("record", RICH_PAYLOAD)
    queued = [
        utils.add_raw_job("record", {"mail": n}, JobSpec(queue_name="interop-emails"))
        for n in (1, 2)
    ]
    original = utils.add_raw_job("record", {"version": 1}, JobSpec(job_key="interop-key"))
    replaced = utils.add_raw_job(
        "record", {"version": 2, "note": "the replacement"}, JobSpec(job_key="interop-key")
    )
    batch = utils.add_raw_jobs(
        [
            RawJobSpec("record", {"batch": 1}),
            RawJobSpec("record", {"batch": 2}, JobSpec(queue_name="interop-emails")),
            RawJobSpec("record", ["an", "array", "payload"], JobSpec(max_attempts=3)),
        ]
    )
    utils.add_batch_job("record", [{"item": 1}], JobSpec(job_key="interop-batch"))
    batch_job = utils.add_batch_job(
        "record", [{"item": 2}, {"item": 3}], JobSpec(job_key="interop-batch")
    )
    urgent = utils.add_raw_job(
        "record", {"urgent": True}, JobSpec(priority=-5, flags=["interop", "gpu"])
    )
    overdue = utils.add_raw_job(
        "record", {"overdue": True}, JobSpec(run_at=now - timedelta(seconds=30))
    )
    # Lowest priority, so that they run last and --once exits before a retry falls due.
    failing = utils.add_raw_job(
        "explode", {"reason": "no retries"}, JobSpec(max_attempts=1, priority=10)
    )
    retrying = utils.add_raw_job(
        "explode", {"reason": "retry"}, JobSpec(max_attempts=5, priority=10)
    )

    assert (replaced.id, replaced.revision) == (original.id, 1)
    assert batch_job.payload == [{"item": 1}, {"item": 2}, {"item": 3}]
    succeeding = [plain, *queued, replaced, *batch, batch_job, urgent, overdue]
    stored = {job.id: job.payload for job in Job.objects.filter(id__in=[j.id for j in succeeding])}
    assert stored == {job.id: job.payload for job in succeeding}
    assert stored[replaced.id] == {"version": 2, "note": "the replacement"}
    assert len(stored) == 10

    output = tmp_path / "runs.jsonl"
    monkeypatch.setenv("INTEROP_OUTPUT", str(output))
    run_graphile_worker(
        node_database_url(), worker_schema(), ["--once", "--jobs", "1"], cwd=INTEROP_DIR
    )

    runs = recorded_runs(output)
    assert Counter(int(run["id"]) for run in runs) == Counter(list(stored))  # each exactly once
    assert {int(run["id"]): run["payload"] for run in runs} == stored
    assert {(run["task_identifier"], run["attempts"]) for run in runs} == {("record", 1)}
    # One worker takes jobs by priority, then run_at: ours were honoured.
    assert [int(run["id"]) for run in runs[:2]] == [urgent.id, overdue.id]

    # Only this test's rows: earlier transactional tests may have left jobs of other tasks.
    ours = Job.objects.filter(id__in=[*stored, failing.id, retrying.id])
    left = list(ours.with_state().select_related("task", "job_queue").order_by("id"))
    assert [
        (job.id, job.task.identifier, job.attempts, job.max_attempts, job.last_error)
        for job in left
    ] == [
        (failing.id, "explode", 1, 1, "interop explode: no retries"),
        (retrying.id, "explode", 1, 5, "interop explode: retry"),
    ]
    assert {(job.job_queue, job.locked_at, job.locked_by) for job in left} == {(None, None, None)}
    assert left[0].state == "failed"
    assert left[1].run_at >= left[1].updated_at + FIRST_RETRY_BACKOFF
    assert list(ours.retrying().values_list("id", flat=True)) == [retrying.id]
    assert [
        (queue.locked_at, queue.locked_by)
        for queue in JobQueue.objects.filter(queue_name="interop-emails")
    ] == [(None, None)]


def test_node_worker__wakes_up_on_the_notify_of_our_add_job(
    worker_rows, node_cli: Path, tmp_path: Path
) -> None:
    """With a one-minute poll interval, only the `jobs:insert` NOTIFY our add_job sends can make
    the worker fetch the job within seconds."""
    output, log = tmp_path / "runs.jsonl", tmp_path / "worker.log"
    application_name = f"interop-{uuid.uuid4().hex[:12]}"
    database_url = node_database_url(application_name=application_name)
    args = ["--poll-interval", "60000", "--jobs", "1"]

    with running_node_worker(database_url, output, log, args) as process:
        # Ready when its first fetch found nothing (it now sleeps for a minute) and its LISTEN
        # has run.
        wait_for(
            lambda: (
                "[interop] idle" in log.read_text(errors="replace")
                and node_listener_ready(application_name)
            ),
            timeout=STARTUP_TIMEOUT,
            what="the Node worker to listen for jobs:insert",
            process=process,
            log=log,
        )
        job = WorkerUtils().add_raw_job("record", {"wake": "up", "text": "ünïcode ✓"})
        runs = wait_for(
            lambda: recorded_runs(output),
            timeout=NOTIFY_TIMEOUT,
            what=f"job {job.id} to run after our NOTIFY",
            process=process,
            log=log,
        )
        wait_for(
            lambda: not Job.objects.filter(id=job.id).exists(),
            timeout=NOTIFY_TIMEOUT,
            what=f"job {job.id} to be completed (deleted)",
            process=process,
            log=log,
        )

    assert runs == [
        {
            "id": str(job.id),
            "task_identifier": "record",
            "attempts": 1,
            "payload": {"wake": "up", "text": "ünïcode ✓"},
        }
    ]
    prefix = "[interop] notification jobs:insert "
    notifications = [
        json.loads(line.removeprefix(prefix))
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith(prefix)
    ]
    assert [payload["count"] for payload in notifications] == [1]


# --- Node -> ours ---------------------------------------------------------------------------


def job_row(job: Job) -> dict[str, Any]:
    return {
        "task": job.task.identifier,
        "queue": job.job_queue.queue_name if job.job_queue else None,
        "payload": job.payload,
        "priority": job.priority,
        "max_attempts": job.max_attempts,
        "key": job.key,
        "flags": job.flags,
        "state": job.state,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "locked_at": job.locked_at,
        "revision": job.revision,
        "is_available": job.is_available,
    }


def test_models__read_jobs_added_by_the_real_node_api_on_the_real_schema(
    real_node_schema: str,
) -> None:
    alias, schema = worker_alias(), worker_schema()
    before = database_now()
    future = to_milliseconds(before + timedelta(days=2))
    past = to_milliseconds(before - timedelta(minutes=5))
    ordinary = {"identifier": "send_email", "payload": RICH_PAYLOAD, "spec": {}}
    scheduled = {
        "identifier": "send_email",
        "payload": {"to": "ada@example.org"},
        "spec": {
            "queueName": "emails",
            "runAt": future.isoformat(),
            "maxAttempts": 7,
            "jobKey": "welcome-ada",
            "priority": 3,
            "flags": ["urgent", "gpu"],
        },
    }
    array = {
        "identifier": "import_rows",
        "payload": [1, {"row": 2}, "three", None],
        "spec": {"jobKey": "import-batch", "runAt": past.isoformat(), "priority": -2},
    }
    batch = [
        {
            "identifier": "resize_image",
            "payload": {"width": 100},
            "spec": {"queueName": "images", "maxAttempts": 3, "flags": ["cpu"]},
        },
        {"identifier": "resize_image", "payload": {"width": 200}, "spec": {}},
    ]

    ids = run_add_jobs(real_node_schema, {"jobs": [ordinary, scheduled, array], "batch": batch})
    after = database_now()

    jobs = {job.id: job for job in Job.objects.with_state().select_related("task", "job_queue")}
    assert sorted(jobs) == sorted(ids["jobs"] + ids["batch"])
    ordinary_id, scheduled_id, array_id = ids["jobs"]
    resize_id, plain_resize_id = ids["batch"]
    defaults = {
        "priority": 0,
        "max_attempts": 25,
        "key": None,
        "flags": None,
        "state": "ready",
        "attempts": 0,
        "last_error": None,
        "locked_at": None,
        "revision": 0,
        "is_available": True,
    }
    assert {job_id: job_row(job) for job_id, job in jobs.items()} == {
        ordinary_id: {**defaults, "task": "send_email", "queue": None, "payload": RICH_PAYLOAD},
        scheduled_id: {
            **defaults,
            "task": "send_email",
            "queue": "emails",
            "payload": {"to": "ada@example.org"},
            "priority": 3,
            "max_attempts": 7,
            "key": "welcome-ada",
            "flags": {"urgent": True, "gpu": True},
            "state": "scheduled",
        },
        array_id: {
            **defaults,
            "task": "import_rows",
            "queue": None,
            "payload": [1, {"row": 2}, "three", None],
            "priority": -2,
            "key": "import-batch",
        },
        resize_id: {
            **defaults,
            "task": "resize_image",
            "queue": "images",
            "payload": {"width": 100},
            "max_attempts": 3,
            "flags": {"cpu": True},
        },
        plain_resize_id: {
            **defaults,
            "task": "resize_image",
            "queue": None,
            "payload": {"width": 200},
        },
    }
    assert (jobs[scheduled_id].run_at, jobs[array_id].run_at) == (future, past)
    for job_id in (ordinary_id, resize_id, plain_resize_id):  # no runAt: the database's now()
        assert before <= jobs[job_id].run_at <= after
    assert jobs[scheduled_id].flag_names == ["gpu", "urgent"]
    assert list(Job.objects.scheduled().values_list("id", flat=True)) == [scheduled_id]
    assert list(Job.objects.in_queue("images").values_list("id", flat=True)) == [resize_id]
    assert sorted(Task.objects.values_list("identifier", flat=True)) == [
        "import_rows",
        "resize_image",
        "send_email",
    ]
    assert list(JobQueue.objects.values_list("queue_name", flat=True)) == ["emails", "images"]

    capabilities = detect(alias, schema)
    assert (
        capabilities.flavour,
        capabilities.has_recovery,
        capabilities.has_workers_table,
        capabilities.latest_migration,
        capabilities.problem,
    ) == (Flavour.NODE, False, False, 20, None)

    assert WorkerUtils().migrate() == MigrateResult(
        Flavour.NODE, Flavour.RUST_RECOVERY, installed_core=False, added_recovery=True
    )
    assert detect(alias, schema).has_recovery is True
    reread = Job.objects.with_state().select_related("task", "job_queue")
    assert {job.id: (job_row(job), job.run_at) for job in reread} == {
        job_id: (job_row(job), job.run_at) for job_id, job in jobs.items()
    }
