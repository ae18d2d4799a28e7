"""Replica reads (worker_admin/replica.py), against a REAL streaming replica.

tests/replicadb.py makes a throwaway primary (wal_level=replica), installs the console's tables
and the worker schema there, takes a pg_basebackup of it and starts that as a hot standby on
another port. Two consoles run in their own processes (tests/faultdb.py) with
DATABASE_REPLICA_URL pointing at the standby: one that tolerates an hour of lag, one that
tolerates two seconds. Pausing WAL replay on the standby (pg_wal_replay_pause) makes "the
replica is behind" a fact the tests control: a job added on the primary is then absent from
the replica, so whether a page shows it tells which server the page read.

What they prove:
- read-only pages, job detail, a task's and a queue's page, the JSON API and /metrics read the
  replica (a job added while replay is paused is missing there, and shows once replay resumes);
  the replica's pg_stat_activity holds the console's reads of the jobs table; the banner gives
  the lag;
- the action preview pins its targets on the primary and the write goes there (the job it acts
  on does not exist on the replica yet), with its audit entry;
- too far behind, or stopped: pages read the primary and say so, still 200; /healthz reports the
  replica and stays 200; a replica that comes back is used again;
- the history recorder, reading the replica, still counts the jobs added and completed on the
  primary: a standby's table statistics ignore replayed changes, so those come from the primary.

The last tests run in-process, without a cluster: the check's cache and the refusal of a
"replica" that is not in recovery.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings as django_settings

from tests.faultdb import (
    APPLICATION_NAME,
    ROOT,
    Browser,
    ConsoleProcess,
    console_environment,
    free_port,
    hidden_field,
    prepare,
    start_console,
)
from tests.replicadb import Primary, Replica, start_pair
from worker_admin import replica as replica_module

DB = "console"
SCHEMA = "graphile_worker"
AUDIT = "graphile_console.worker_admin_auditentry"
HISTORY = "graphile_console.worker_admin_historysnapshot"
WAIT = 60.0  # seconds to wait for replay, a check interval or a restart to take effect
LAGGING = "Reading from the replica, "
FALLBACK = "reading from the primary"


# -- fixtures: one primary and its streaming replica, two consoles on them -------------------------


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Primary, Replica]]:
    primary, replica = start_pair(DB, prepare=prepare)
    try:
        yield primary, replica
    finally:
        replica.destroy()
        primary.destroy()


def _console(pair, tmp_path_factory, name: str, max_lag: int) -> Iterator[ConsoleProcess]:
    primary, replica = pair
    log = tmp_path_factory.mktemp(name) / "console.log"
    process = start_console(
        primary.url(DB),
        log,
        DATABASE_REPLICA_URL=replica.url(DB),
        REPLICA_CHECK_SECONDS="1",
        REPLICA_LAG_WARN_SECONDS="1",
        REPLICA_LAG_MAX_SECONDS=str(max_lag),
        HISTORY_INTERVAL_SECONDS="1",  # a history snapshot after any request a second apart
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def console(pair, tmp_path_factory) -> Iterator[ConsoleProcess]:
    """Tolerates an hour of lag: with replay paused it keeps reading the replica."""
    yield from _console(pair, tmp_path_factory, "console", 3600)


@pytest.fixture(scope="module")
def strict_console(pair, tmp_path_factory) -> Iterator[ConsoleProcess]:
    """Tolerates two seconds of lag."""
    yield from _console(pair, tmp_path_factory, "strict", 2)


@pytest.fixture
def browser(console: ConsoleProcess) -> Browser:
    browser = Browser(console.base)
    browser.login()
    return browser


@pytest.fixture(autouse=True)
def _replica_streaming_afterwards(request):
    """Whatever a test did to the replica, the next one finds it running, replaying, caught up."""
    yield
    if "pair" in request.fixturenames:
        primary, replica = request.getfixturevalue("pair")
        if not replica.is_running():
            replica.start()
        replica.resume_replay()
        replica.wait_until_replayed(primary)


# -- helpers ---------------------------------------------------------------------------------------


def add_job(primary: Primary, task: str) -> int:
    """A job a day ahead (nothing runs it), added on the primary through the schema's add_job."""
    return primary.sql(
        f"SELECT (j).id FROM (SELECT {SCHEMA}.add_job(%s, run_at := now() + interval '1 day') "
        "AS j) AS added",
        [task],
        dbname=DB,
    )[0][0]


def caught_up_then_paused(primary: Primary, replica: Replica) -> None:
    """The replica has replayed everything, then stops replaying (it still receives)."""
    replica.wait_until_replayed(primary)
    replica.pause_replay()


def wait_for(what: str, probe: Callable[[], object]) -> object:
    """Call probe until it returns something truthy (returned), for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def listed(html: str, job_id: int) -> bool:
    return f"/jobs/{job_id}/" in html


def get_json(console: ConsoleProcess, path: str, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(console.base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as reply:
        return reply.code, json.loads(reply.read() or b"{}")


def healthz(console: ConsoleProcess) -> dict:
    status, body = get_json(console, "/healthz")
    assert status == 200, (status, body)  # the replica never makes the console unhealthy
    return body


def scheduled_jobs(console: ConsoleProcess) -> int:
    with urllib.request.urlopen(console.base + "/metrics", timeout=30) as reply:
        text = reply.read().decode()
    found = re.search(r'^graphile_worker_jobs\{state="scheduled"\} ([0-9.e+]+)$', text, re.M)
    assert found, text[:2000]
    return int(float(found.group(1)))


def api_token(primary: Primary) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tests.replicadb", "token"],
        cwd=ROOT,
        env=console_environment(primary.url(DB)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


# -- reads come from the replica -------------------------------------------------------------------


@pytest.mark.faults
def test_replica__pages_read_the_replica__a_new_job_shows_once_replayed(pair, console, browser):
    primary, replica = pair
    seen = add_job(primary, "replica_seen")
    replica.wait_until_replayed(primary)
    page = browser.get("/jobs/?task=replica_seen")
    assert page.status == 200 and listed(page.text, seen)
    # The read happened on the standby: its pg_stat_activity holds the console's session, whose
    # last statement read the jobs table.
    reads = replica.sql(
        "SELECT pg_is_in_recovery(), count(*) FROM pg_stat_activity "
        "WHERE application_name = %s AND query LIKE %s",
        [APPLICATION_NAME, f"%{SCHEMA}%_private_jobs%"],
        dbname=DB,
    )
    assert reads[0][0] is True and reads[0][1] >= 1
    body = healthz(console)["replica"]
    assert (body["configured"], body["in_use"], body["error"]) == (True, True, None)
    assert body["lag_seconds"] is not None and LAGGING not in page.text

    caught_up_then_paused(primary, replica)
    late = add_job(primary, "replica_late")
    page = browser.get("/jobs/?task=replica_late")
    assert page.status == 200 and not listed(page.text, late)
    assert browser.get(f"/jobs/{late}/").status == 404  # not on the replica yet
    # Replay stays paused: the lag grows past REPLICA_LAG_WARN_SECONDS and the banner says so.
    lagging = wait_for(
        "the lag banner",
        lambda: (r := browser.get("/jobs/?task=replica_late")) and LAGGING in r.text and r,
    )
    assert not listed(lagging.text, late)
    assert re.search(r"Reading from the replica, [1-9][0-9]* s behind", lagging.text)
    body = healthz(console)["replica"]
    assert body["in_use"] is True and body["lag_seconds"] >= 1 and body["error"] is None

    replica.resume_replay()
    shown = wait_for(
        "the job after replay",
        lambda: (
            (r := browser.get("/jobs/?task=replica_late")).status == 200
            and listed(r.text, late)
            and LAGGING not in r.text
            and r
        ),
    )
    assert FALLBACK not in shown.text
    assert browser.get(f"/jobs/{late}/").status == 200


@pytest.mark.faults
def test_replica__task_and_queue_pages_read_the_replica(pair, browser):
    primary, replica = pair
    caught_up_then_paused(primary, replica)
    primary.sql(
        f"SELECT {SCHEMA}.add_job('replica_entity', queue_name := 'replica_entity_queue', "
        "run_at := now() + interval '1 day')",
        dbname=DB,
    )
    pages = ("/tasks/replica_entity/", "/queues/replica_entity_queue/")
    assert [browser.get(page).status for page in pages] == [404, 404]  # not replayed yet

    replica.resume_replay()
    replica.wait_until_replayed(primary)
    assert [browser.get(page).status for page in pages] == [200, 200]


@pytest.mark.faults
def test_replica__api_and_metrics_read_the_replica(pair, console):
    primary, replica = pair
    token = api_token(primary)
    caught_up_then_paused(primary, replica)
    before = scheduled_jobs(console)
    job = add_job(primary, "replica_api")
    status, body = get_json(console, "/api/jobs?task=replica_api", token)
    assert (status, body["jobs"]) == (200, [])
    assert get_json(console, f"/api/jobs/{job}", token)[0] == 404
    assert scheduled_jobs(console) == before

    replica.resume_replay()
    replica.wait_until_replayed(primary)
    status, body = get_json(console, "/api/jobs?task=replica_api", token)
    assert status == 200 and [row["id"] for row in body["jobs"]] == [job]
    assert scheduled_jobs(console) == before + 1


# -- writes, and the previews that pin their targets, use the primary ------------------------------


@pytest.mark.faults
def test_replica__the_preview_pins_targets_on_the_primary__the_write_goes_there(pair, browser):
    primary, replica = pair
    caught_up_then_paused(primary, replica)
    job = add_job(primary, "replica_write")  # on the primary only, while replay is paused
    assert replica.sql(f"SELECT count(*) FROM {SCHEMA}._private_jobs WHERE id = %s", [job], DB) == [
        (0,)
    ]
    fields = [("action", "run_now"), ("scope", "ids"), ("ids", job)]
    preview = browser.post("/jobs/actions/", fields)
    assert preview.status == 200, preview.text[:3000]
    token = hidden_field(preview.text, "token")
    done = browser.post("/jobs/actions/", [*fields, ("token", token), ("reason", "replica test")])
    assert done.status == 302, done.text[:3000]
    due = primary.sql(
        f"SELECT run_at <= now() FROM {SCHEMA}._private_jobs WHERE id = %s", [job], dbname=DB
    )
    assert due == [(True,)]
    audit = primary.sql(
        f"SELECT outcome, changed_ids FROM {AUDIT} WHERE action = 'run_now' ORDER BY id DESC "
        "LIMIT 1",
        dbname=DB,
    )
    assert audit == [("done", [job])]


# -- history ---------------------------------------------------------------------------------------


def snapshots_after(primary: Primary, snapshot_id: int) -> list[tuple]:
    """(id, added, deleted, stat_inserted) of the console's history rows after `snapshot_id`."""
    return primary.sql(
        f"SELECT id, added, deleted, stat_inserted FROM {HISTORY} WHERE schema = %s AND id > %s "
        "ORDER BY id",
        [SCHEMA, snapshot_id],
        dbname=DB,
    )


def new_snapshot(primary: Primary, browser: Browser, after: int) -> tuple:
    """Browse until the recorder (it runs after a request once a snapshot is due) saves one."""
    return wait_for(
        "a history snapshot",
        lambda: browser.get("/").status == 200 and snapshots_after(primary, after)[-1:],
    )[0]


@pytest.mark.faults
def test_replica__history_counts_jobs_added_and_completed_on_the_primary(pair, console, browser):
    primary, replica = pair
    replica.wait_until_replayed(primary)
    assert healthz(console)["replica"]["in_use"] is True  # the recorder reads the replica
    newest = primary.sql(f"SELECT coalesce(max(id), 0) FROM {HISTORY}", dbname=DB)[0][0]
    baseline = new_snapshot(primary, browser, newest)
    assert baseline[3] is not None  # the statistics were read
    added = [add_job(primary, "replica_history") for _ in range(5)]
    primary.sql(f"SELECT {SCHEMA}.complete_jobs(%s::bigint[])", [added[:3]], dbname=DB)
    replica.wait_until_replayed(primary)  # the pages now show the jobs: so must the history
    # Each sql() call is a session of its own, whose statistics are reported when it ends: a
    # snapshot that starts after this line sees all of them.
    marker = new_snapshot(primary, browser, baseline[0])
    later = new_snapshot(primary, browser, marker[0])
    rows = snapshots_after(primary, baseline[0])
    assert rows[-1][0] >= later[0]
    assert all(row[1] is not None and row[2] is not None for row in rows), rows
    assert (sum(row[1] for row in rows), sum(row[2] for row in rows)) == (5, 3), rows


# -- fallback --------------------------------------------------------------------------------------


@pytest.mark.faults
def test_replica__too_far_behind__pages_read_the_primary_and_say_so(pair, strict_console):
    primary, replica = pair
    browser = Browser(strict_console.base)
    browser.login()
    caught_up_then_paused(primary, replica)
    job = add_job(primary, "replica_behind")
    page = wait_for(
        "the fallback banner",
        lambda: (
            (r := browser.get("/jobs/?task=replica_behind")).status == 200
            and "Replica too far behind: " + FALLBACK in r.text
            and r
        ),
    )
    assert listed(page.text, job)  # read from the primary, which has it
    body = healthz(strict_console)
    assert body["status"] == "ok" and body["replica"]["configured"] is True
    assert body["replica"]["in_use"] is False and body["replica"]["lag_seconds"] > 2
    assert "REPLICA_LAG_MAX_SECONDS" in body["replica"]["error"]

    replica.resume_replay()
    wait_for("the replica in use again", lambda: healthz(strict_console)["replica"]["in_use"])
    page = browser.get("/jobs/?task=replica_behind")
    assert page.status == 200 and listed(page.text, job) and FALLBACK not in page.text


@pytest.mark.faults
def test_replica__stopped__pages_read_the_primary__healthz_stays_200(pair, console, browser):
    primary, replica = pair
    assert LAGGING not in browser.get("/jobs/").text  # a session with the replica in use
    replica.stop()
    job = add_job(primary, "replica_down")
    wait_for("the replica reported down", lambda: not healthz(console)["replica"]["in_use"])
    body = healthz(console)
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["replica"] == {
        "configured": True,
        "in_use": False,
        "lag_seconds": None,
        "error": "unreachable",
    }
    for path in ("/jobs/?task=replica_down", "/", "/failures/", "/queues/", "/workers/"):
        page = browser.get(path)
        assert page.status == 200, (path, page.status, page.text[:2000])
        assert "Replica unavailable: " + FALLBACK in page.text, path
    assert listed(browser.get("/jobs/?task=replica_down").text, job)
    # No address, port or driver message in the open health check.
    assert str(replica.port) not in json.dumps(body) and "refused" not in json.dumps(body)

    replica.start()
    replica.wait_until_replayed(primary)
    wait_for("the replica in use again", lambda: healthz(console)["replica"]["in_use"])
    page = browser.get("/jobs/?task=replica_down")  # on the replica's new connection
    assert page.status == 200 and listed(page.text, job) and FALLBACK not in page.text


# -- in-process: the check itself ------------------------------------------------------------------


@pytest.fixture
def fresh_check():
    replica_module.forget()
    yield
    replica_module.forget()


def _with_replica(monkeypatch, entry: dict) -> None:
    """Configure the replica alias in settings only (Django's connections are not touched)."""
    databases = {**django_settings.DATABASES, replica_module.REPLICA_ALIAS: entry}
    monkeypatch.setattr(django_settings, "DATABASES", databases)


def test_replica__not_configured__reads_the_primary(fresh_check):
    assert replica_module.status() == replica_module.NOT_CONFIGURED
    assert replica_module.read_alias() == django_settings.WORKER_DATABASE


def test_replica__a_primary_named_as_replica_is_refused(db, fresh_check, monkeypatch):
    _with_replica(monkeypatch, dict(django_settings.DATABASES[django_settings.WORKER_DATABASE]))
    found = replica_module.status()
    assert (found.configured, found.in_use) == (True, False)
    assert found.error.startswith("not in recovery")
    assert replica_module.read_alias() == django_settings.WORKER_DATABASE


def test_replica__a_failed_check_is_remembered_for_the_interval(db, fresh_check, monkeypatch):
    monkeypatch.setattr(django_settings, "REPLICA_CHECK_SECONDS", 3600)
    primary = dict(django_settings.DATABASES[django_settings.WORKER_DATABASE])
    _with_replica(monkeypatch, {**primary, "HOST": "127.0.0.1", "PORT": str(free_port())})
    down = replica_module.status()
    assert (down.in_use, down.error) == (False, "unreachable")
    # Even with the settings now naming a server that answers, no second check happens within
    # the interval: the failure is remembered, so a dead replica costs one connect attempt.
    _with_replica(monkeypatch, primary)
    assert replica_module.status() is down
    replica_module.forget()
    assert replica_module.status().error.startswith("not in recovery")
