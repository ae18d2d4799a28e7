"""Concurrency, for real: the console's writes racing each other and racing live Node workers.

Double submits. The same confirmation posted twice at the same moment, from two threads with
two database connections and one session (a double click). A lock the test holds on the jobs
table makes the first request wait inside its transaction until the second has passed the
session's nonce check and is waiting too, so the protection under test is the one that holds
for simultaneous requests: the claim in the audit log (worker_admin/actions.py) for bulk actions
and the sweep, the user-row lock for adding a job (worker_admin/views/add.py). One request acts;
the other answers "already used" / "already done"; the audit log has one "done" entry.

Live Node workers. Real graphile-worker 0.18.0 processes run `conc_record`
(tests/node/concurrency/tasks), which logs a start and an end line per run and holds its job
meanwhile. While they work, the console completes, fails and reschedules jobs, some of them held
by a worker at that moment, and sweeps for dead workers while Node jobs have been held for ten
minutes. Afterwards: no job started twice; no job a worker ran was also changed by the console
(the schema functions skip locked jobs, and the console reports them as skipped); every job is
accounted for; the reported counts are the audit log's and the database's.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.db import connections
from django.test import Client
from django.utils import timezone

from tests.nodejs import NODE_DIR, ensure_graphile_worker
from tests.test_interop import STOP_TIMEOUT, node_database_url, sql, worker_schema
from worker_admin.audit import AuditEntry
from worker_admin.installer import quote_schema
from worker_admin.models import Job
from worker_admin.roles import ensure_groups
from worker_admin.utils import JobSpec, WorkerUtils

# Builds its own connection strings: CI runs it on the embedded PostgreSQL too.
pytestmark = pytest.mark.embedded

CONCURRENCY_DIR = NODE_DIR / "concurrency"
TASK = "conc_record"
WAIT = 60.0
ACTIONS_URL = "/jobs/actions/"


# -- two requests at once -------------------------------------------------------------------------


@pytest.fixture
def admin_session(worker_rows, django_user_model) -> tuple[Client, Client]:
    """Two clients sharing one logged-in admin session: two tabs, or a double click."""
    ensure_groups()
    user = django_user_model.objects.create_user("racer", password="pw-123456789")
    user.groups.add(Group.objects.get(name="admin"))
    first, second = Client(), Client()
    first.force_login(user)
    second.cookies = first.cookies
    return first, second


def _in_thread(send: Callable[[], object]) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        try:
            box["reply"] = send()
        except BaseException as exc:  # reported by _result
            box["error"] = exc
        finally:
            connections.close_all()  # this thread's connections, not the test's

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _result(thread: threading.Thread, box: dict):
    thread.join(timeout=WAIT)
    assert not thread.is_alive(), "a request did not finish"
    if "error" in box:
        raise box["error"]
    return box["reply"]


def _console_backends_waiting() -> int:
    return sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = %s AND wait_event_type = 'Lock'",
        [django_settings.APPLICATION_NAME],
    )[0][0]


def simultaneously(send: Callable[[], object], send_again: Callable[[], object]) -> list:
    """Send a request and its double at once. A SHARE lock on the jobs table (reads pass, writes
    wait) keeps the first inside its transaction until both requests are waiting on a lock, that
    is until both have got past everything before the write; then it is let go."""
    with psycopg.connect(node_database_url()) as blocker:
        blocker.execute(f"LOCK TABLE {quote_schema(worker_schema())}._private_jobs IN SHARE MODE")
        threads = [_in_thread(send), _in_thread(send_again)]
        deadline = time.monotonic() + WAIT
        while _console_backends_waiting() < 2:
            assert time.monotonic() < deadline, "the two requests never waited together"
            assert all(t.is_alive() for t, _ in threads), "a request finished without waiting"
            time.sleep(0.02)
        blocker.rollback()
    return [_result(thread, box) for thread, box in threads]


def _token(response) -> str:
    match = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(1)


def _text(response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))


def _done(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action, outcome="done"))


def test_double_submit__bulk_action_acts_once(admin_session):
    first, second = admin_session
    utils = WorkerUtils()
    ids = [utils.add_raw_job("double_bulk", {"n": n}, JobSpec(priority=0)).id for n in range(5)]
    form = {"action": "reschedule", "scope": "ids", "ids": ids, "has_options": "1"}
    form |= {"priority": "7", "reason": "double click"}
    token = _token(first.post(ACTIONS_URL, form))

    confirm = form | {"token": token}
    replies = simultaneously(
        lambda: first.post(ACTIONS_URL, confirm), lambda: second.post(ACTIONS_URL, confirm)
    )

    assert sorted(r.status_code for r in replies) == [302, 400]
    refused = next(r for r in replies if r.status_code == 400)
    assert "already used" in _text(refused) and "Nothing was done again" in _text(refused)
    done = _done("reschedule")
    assert len(done) == 1 and sorted(done[0].changed_ids) == sorted(ids)
    assert AuditEntry.objects.filter(action="reschedule", outcome="rejected").count() == 1
    assert set(Job.objects.filter(id__in=ids).values_list("priority", flat=True)) == {7}


def test_double_submit__add_job_adds_one(admin_session):
    first, second = admin_session
    fields = {"identifier": "double_add", "payload": '{"order": 42}'}
    preview = first.post("/jobs/add/", fields)
    assert preview.status_code == 200
    hidden = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', preview.content.decode())
    )
    confirm = {k: html.unescape(v) for k, v in hidden.items() if k != "csrfmiddlewaretoken"}
    confirm["confirm"] = "1"

    replies = simultaneously(
        lambda: first.post("/jobs/add/", confirm, follow=True),
        lambda: second.post("/jobs/add/", confirm, follow=True),
    )

    assert [r.status_code for r in replies] == [200, 200]
    texts = [_text(r) for r in replies]
    assert sum("Already done" in t for t in texts) == 1
    assert sum("Added job" in t for t in texts) == 1
    assert Job.objects.filter(task__identifier="double_add").count() == 1
    assert len(_done("add_job")) == 1


def test_double_continue__long_action_does_each_part_once(admin_session, settings):
    """A long bulk action continues step by step; two "continue" posts of the same step (the
    progress page's poll and a click on its button) must not do a part twice: the second one
    waits for the first, then catches up from the audit log and goes on from there."""
    settings.ACTION_STEP_SECONDS = 0  # one part per request
    first, second = admin_session
    q = quote_schema(worker_schema())
    sql(
        f"SELECT {q}.add_job('double_continue', '{{}}'::json, run_at := now() + interval '1 day')"
        " FROM generate_series(1, 2500)"
    )
    query = "?task=double_continue"
    form = {"action": "run_now", "scope": "filter"}
    token = _token(first.post(ACTIONS_URL + query, form))
    progress = first.post(ACTIONS_URL + query, form | {"token": token})
    assert "in progress" in _text(progress)
    batch = re.search(r'name="batch" value="([^"]+)"', progress.content.decode()).group(1)

    url = "/jobs/actions/continue/"
    replies = simultaneously(
        lambda: first.post(url, {"batch": batch}), lambda: second.post(url, {"batch": batch})
    )
    assert all(r.status_code in (200, 302) for r in replies)
    reply = first.post(url, {"batch": batch})
    while reply.status_code == 200:
        reply = first.post(url, {"batch": batch})

    entries = list(AuditEntry.objects.filter(action="run_now").order_by("pk"))
    assert [(e.outcome, e.parameters["part"]) for e in entries] == [
        ("done", 1),
        ("done", 2),
        ("done", 3),
    ]
    assert sum(len(e.changed_ids) for e in entries) == 2500
    ready = Job.objects.filter(task__identifier="double_continue", run_at__lte=timezone.now())
    assert ready.count() == 2500


def _register_dead_worker_with_a_job() -> int:
    q = quote_schema(worker_schema())
    job = WorkerUtils().add_raw_job("double_sweep", {"n": 1})
    sql(
        f"INSERT INTO {q}._private_workers (id, last_heartbeat_at) "
        "VALUES ('graphile_worker_dead01', now() - interval '1 hour')"
    )
    sql(
        f"UPDATE {q}._private_jobs SET locked_by = 'graphile_worker_dead01', "
        "locked_at = now() - interval '1 hour', attempts = 1 WHERE id = %s",
        [job.id],
    )
    return job.id


def test_double_submit__sweep_sweeps_once(admin_session):
    first, second = admin_session
    job_id = _register_dead_worker_with_a_job()
    form = {"threshold_minutes": "5", "delay_seconds": "0"}
    dry_run = first.post("/maintenance/sweep/", form)
    assert "graphile_worker_dead01" in _text(dry_run)

    confirm = {"token": _token(dry_run), "reason": "double submit"}
    replies = simultaneously(
        lambda: first.post("/maintenance/sweep/", confirm),
        lambda: second.post("/maintenance/sweep/", confirm),
    )

    assert sorted(r.status_code for r in replies) == [302, 400]
    refused = next(r for r in replies if r.status_code == 400)
    assert "already used" in _text(refused)
    done = _done("sweep")
    assert len(done) == 1 and done[0].changed_ids == [job_id]
    assert "changed 1 of 1 job of 1 dead worker (1 recovered)" in done[0].summary
    assert Job.objects.get(id=job_id).locked_by is None


# -- racing live Node workers ----------------------------------------------------------------------


@contextmanager
def node_workers(count: int, jobs_each: int, output: Path, logs: Path) -> Iterator[list]:
    cli = ensure_graphile_worker()
    url = node_database_url()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "GRAPHILE_WORKER_SCHEMA": worker_schema(),
        "CONCURRENCY_OUTPUT": str(output),
    }
    command = [str(cli), "--connection", url, "--schema", worker_schema()]
    command += ["--jobs", str(jobs_each), "--poll-interval", "200"]
    processes = []
    try:
        for n in range(count):
            with open(logs / f"node-{n}.log", "wb") as log:
                processes.append(
                    subprocess.Popen(
                        command, cwd=CONCURRENCY_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)


def runs(output: Path) -> list[dict]:
    if not output.exists():
        return []
    return [json.loads(line) for line in output.read_text().split("\n")[:-1]]


def starts(output: Path) -> Counter:
    return Counter(int(run["id"]) for run in runs(output) if run["event"] == "start")


def wait_for(check: Callable[[], object], what: str, processes: list, logs: Path):
    deadline = time.monotonic() + WAIT
    while not (value := check()):
        for process in processes:
            if process.poll() is not None:
                text = "\n".join(p.read_text(errors="replace") for p in logs.glob("node-*.log"))
                pytest.fail(f"a Node worker exited while waiting for {what}:\n{text}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT:.0f} s for {what}")
        time.sleep(0.05)
    return value


def locked_ids() -> list[int]:
    return [
        row[0]
        for row in sql(
            f"SELECT id FROM {quote_schema(worker_schema())}._private_jobs "
            "WHERE locked_at IS NOT NULL AND locked_by LIKE 'pool-%%' ORDER BY id"
        )
    ]


def ready_unlocked_ids(limit: int) -> list[int]:
    return [
        row[0]
        for row in sql(
            f"SELECT id FROM {quote_schema(worker_schema())}._private_jobs "
            "WHERE locked_at IS NULL AND run_at <= now() AND attempts < max_attempts "
            "ORDER BY id DESC LIMIT %s",
            [limit],
        )
    ]


def runnable_left() -> int:
    """The Node task's jobs a worker may still run, or is running."""
    q = quote_schema(worker_schema())
    return sql(
        f"SELECT count(*) FROM {q}._private_jobs AS j JOIN {q}._private_tasks AS t "
        "ON t.id = j.task_id WHERE t.identifier = %s "
        "AND ((j.run_at <= now() AND j.attempts < j.max_attempts) OR j.locked_at IS NOT NULL)",
        [TASK],
    )[0][0]


def _message(response) -> str:
    messages = [str(m) for m in response.context["messages"]] if response.context else []
    assert len(messages) == 1, messages
    return messages[0]


ROUNDS = [
    ("complete", {"reason": "race: complete"}),
    ("fail", {"reason": "race: fail"}),
    ("reschedule", {"has_options": "1", "run_at": "", "priority": "9", "reason": "race"}),
]


@pytest.mark.node
def test_bulk_actions_racing_node_workers__locked_jobs_skipped_and_nothing_runs_twice(
    admin_session, tmp_path: Path
):
    client, _ = admin_session
    utils = WorkerUtils()
    ids = [utils.add_raw_job(TASK, {"ms": 1500, "n": n}).id for n in range(60)]
    output = tmp_path / "runs.jsonl"
    reports = []
    with node_workers(2, 3, output, tmp_path) as processes:
        for round_number in range(6):
            kind, extra = ROUNDS[round_number % len(ROUNDS)]
            held = wait_for(locked_ids, "jobs held by the Node workers", processes, tmp_path)
            target = held + ready_unlocked_ids(3)
            form = {"action": kind, "scope": "ids", "ids": target} | extra
            if kind == "reschedule":
                form["run_at"] = (timezone.now() + timedelta(days=300)).strftime("%Y-%m-%dT%H:%M")
            preview = client.post(ACTIONS_URL, form)
            assert preview.status_code == 200, _text(preview)[:2000]
            done = client.post(ACTIONS_URL, form | {"token": _token(preview)}, follow=True)
            entry = AuditEntry.objects.filter(action=kind).order_by("-pk").first()
            reports.append((kind, _message(done), entry))
        wait_for(lambda: runnable_left() == 0, "the workers to run the rest", processes, tmp_path)

    started = starts(output)
    assert started and max(started.values()) == 1, "a job ran twice"
    changed = {i for _, _, entry in reports for i in entry.changed_ids}
    skipped = {i for _, _, entry in reports for i in entry.skipped_ids}
    assert not changed & set(started), "the console changed a job a worker ran"
    assert skipped, "no action met a job a worker held: the race did not happen"
    assert skipped <= set(started), "a job reported as held by a worker never ran"
    for kind, message, entry in reports:
        requested, parts = set(entry.requested_ids), [entry.changed_ids, entry.skipped_ids]
        assert requested == set(entry.changed_ids) | set(entry.skipped_ids) | set(entry.missing_ids)
        assert sum(map(len, parts)) + len(entry.missing_ids) == len(requested)
        expected = f"changed {len(entry.changed_ids):,} of {len(requested):,}"
        assert expected in message, (kind, message)
        held = len(entry.skipped_ids) - len(entry.parameters.get("changed_since_preview", []))
        if held:
            assert f"{held:,} skipped: a worker holds them" in message
    # Every job is accounted for: run by a worker, or completed, failed or rescheduled by the
    # console; what is left in the table is exactly what the console failed or rescheduled.
    completed = {i for kind, _, e in reports if kind == "complete" for i in e.changed_ids}
    assert set(started) | changed == set(ids)
    left = set(Job.objects.filter(id__in=ids).values_list("id", flat=True))
    assert left == changed - completed


@pytest.mark.node
def test_sweep_racing_node_workers__never_recovers_a_job_a_live_worker_holds(
    admin_session, tmp_path: Path
):
    """Node never registers, so a Node job held for long looks like an orphan lock. The sweep
    leaves Node lock holders alone (unless asked), and young locks alone in any case; the dead
    Rust-looking worker's job is the only one recovered, and no job runs twice."""
    client, _ = admin_session
    utils = WorkerUtils()
    ids = [utils.add_raw_job(TASK, {"ms": 2500, "n": n}).id for n in range(12)]
    orphan = _register_dead_worker_with_a_job()
    q = quote_schema(worker_schema())
    output = tmp_path / "runs.jsonl"
    with node_workers(2, 2, output, tmp_path) as processes:
        held = wait_for(
            lambda: len(locked_ids()) >= 3 and locked_ids(), "Node jobs", processes, tmp_path
        )
        # As if these jobs had been running for ten minutes: their locks look abandoned.
        sql(
            f"UPDATE {q}._private_jobs SET locked_at = now() - interval '10 minutes' "
            "WHERE id = ANY(%s) AND locked_at IS NOT NULL",
            [held],
        )
        form = {"threshold_minutes": "5", "delay_seconds": "0"}
        dry_run = client.post("/maintenance/sweep/", form)
        assert dry_run.status_code == 200
        assert "looks like a Node worker" in _text(dry_run)  # listed as left alone
        swept = client.post("/maintenance/sweep/", {"token": _token(dry_run), "reason": "dead"})
        assert swept.status_code == 302

        # Asked to include Node lock holders: their young locks are still left alone.
        sql(f"UPDATE {q}._private_jobs SET locked_at = now() WHERE locked_by LIKE 'pool-%%'")
        dry_run = client.post("/maintenance/sweep/", form | {"include_node": "on"})
        assert dry_run.status_code == 200
        assert 'name="token"' not in dry_run.content.decode()  # nothing to sweep
        wait_for(lambda: runnable_left() == 0, "the workers to run the rest", processes, tmp_path)

    started = starts(output)
    assert set(started) == set(ids) and max(started.values()) == 1, started
    (sweep,) = AuditEntry.objects.filter(action="sweep", outcome="done")
    assert sweep.changed_ids == [orphan], sweep.summary
    assert "changed 1 of 1 job of 1 dead worker (1 recovered)" in sweep.summary
    assert Job.objects.get(id=orphan).locked_by is None  # recovered; no Node task runs it


def test_double_submit__undo_of_a_completion_readds_once(admin_session):
    """Undoing a completion re-adds the job: two confirmations at once must add it once."""
    first, second = admin_session
    job = WorkerUtils().add_raw_job("double_undo", {"order": 7})
    form = {"action": "complete", "ids": [job.id], "reason": "double undo test"}
    first.post(ACTIONS_URL, form | {"token": _token(first.post(ACTIONS_URL, form))})
    (completion,) = _done("complete")
    url = f"/audit/{completion.pk}/undo/"
    undo_token = _token(first.post(url))

    replies = simultaneously(
        lambda: first.post(url, {"token": undo_token}),
        lambda: second.post(url, {"token": undo_token}),
    )

    assert sorted(r.status_code for r in replies) == [302, 400]
    assert Job.objects.filter(task__identifier="double_undo").count() == 1
    assert len(_done("undo_complete")) == 1
    refused = AuditEntry.objects.get(action="undo_complete", outcome="rejected")
    assert "already" in refused.error
