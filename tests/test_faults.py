"""Database faults, for real: a throwaway PostgreSQL cluster (tests/faultdb.py) that the tests
stop, start, restart and fill to max_connections, under the console running in its own process
with the production settings, reached over HTTP. Nothing is mocked: the errors are the ones
psycopg raises, and Django's own connection handling (CONN_MAX_AGE, CONN_HEALTH_CHECKS) is what
recovers.

What they prove:
- down at start, down mid-session, restarting (fast and crash), too many clients: pages answer
  503 "Database unavailable" with what to check, never a 500; the login page without a session
  still renders; the first request after the database is back works, with no console restart.
- a read cancelled at the statement timeout answers 504 "took too long" (a lock held by the test
  makes the query wait; READ_STATEMENT_TIMEOUT_MS is 100 in that console).
- a bulk action is never half-done: its connection killed inside a chunk (pg_terminate_backend),
  the database stopped inside a chunk, the database restarted or stopped between chunks, a write
  cancelled at the statement timeout. Each part is all or nothing, its audit entry says done or
  failed, and when even the audit could not be written the log says so and the confirmation can
  be used again once the database is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.faultdb import (
    APPLICATION_NAME,
    Browser,
    Cluster,
    ConsoleProcess,
    hidden_field,
    prepare,
    start_console,
)

pytestmark = pytest.mark.faults

DB = "console"
SCHEMA = "graphile_worker"
AUDIT = "graphile_console.worker_admin_auditentry"
WAIT = 30.0  # seconds to wait for the console's backend to reach a state


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        cluster.start()
        cluster.sql(f"CREATE DATABASE {DB}")
        prepare(cluster.url(DB))
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def console(cluster: Cluster, tmp_path_factory) -> Iterator[ConsoleProcess]:
    log = tmp_path_factory.mktemp("console") / "console.log"
    process = start_console(cluster.url(DB), log)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def _cluster_running_afterwards(request):
    """Whatever a test does to the cluster, the next one finds it running and with no jobs."""
    yield
    if "cluster" in request.fixturenames:
        cluster = request.getfixturevalue("cluster")
        if not cluster.is_running():
            cluster.start()
        cluster.sql(f"DELETE FROM {SCHEMA}._private_jobs", dbname=DB)


@pytest.fixture
def browser(console: ConsoleProcess) -> Browser:
    browser = Browser(console.base)
    browser.login()
    return browser


# -- helpers --------------------------------------------------------------------------------------


def assert_unavailable(reply, *, check: str) -> None:
    assert reply.status == 503, (reply.status, reply.text[:3000])
    assert "Database unavailable" in reply.text
    assert "What to check" in reply.text and check in reply.text
    assert reply.headers.get("Retry-After") == "5"
    assert "Traceback" not in reply.text


def add_jobs(cluster: Cluster, task: str, count: int) -> list[int]:
    rows = cluster.sql(
        f"SELECT (j).id FROM (SELECT {SCHEMA}.add_job(%s, json_build_object('n', n), "
        "run_at := now() + interval '1 day') AS j FROM generate_series(1, %s) AS n) AS added "
        "ORDER BY 1",
        [task, count],
        dbname=DB,
    )
    return [row[0] for row in rows]


def run_ats_in_future(cluster: Cluster, ids: list[int]) -> int:
    """How many of the jobs still have the run_at they were added with (a day ahead)."""
    return cluster.sql(
        f"SELECT count(*) FROM {SCHEMA}._private_jobs WHERE id = ANY(%s) "
        "AND run_at > now() + interval '1 hour'",
        [ids],
        dbname=DB,
    )[0][0]


def audit_entries(cluster: Cluster, action: str) -> list[tuple]:
    return cluster.sql(
        f"SELECT outcome, parameters->>'part', jsonb_array_length(changed_ids), error, "
        f"parameters->>'batch' FROM {AUDIT} WHERE action = %s ORDER BY id",
        [action],
        dbname=DB,
    )


def preview_run_now(browser: Browser, *, ids: list[int] | None = None, task: str = "") -> str:
    """Preview "run now" on ids or on every job of a task; returns the confirmation token."""
    path = "/jobs/actions/" + (f"?task={task}" if task else "")
    data = [("action", "run_now")]
    data += [("scope", "filter")] if task else [("scope", "ids"), *[("ids", i) for i in ids]]
    reply = browser.post(path, data)
    assert reply.status == 200, (reply.status, reply.text[:3000])
    return hidden_field(reply.text, "token")


def confirm_run_now(browser: Browser, token: str, *, ids=None, task: str = ""):
    path = "/jobs/actions/" + (f"?task={task}" if task else "")
    data = [("action", "run_now"), ("token", token), ("reason", "fault test")]
    data += [("scope", "filter")] if task else [("scope", "ids"), *[("ids", i) for i in ids]]
    return browser.post(path, data)


def console_backend_waiting(cluster: Cluster) -> int | None:
    """The pid of the console's backend while it waits for a lock, else None."""
    rows = cluster.sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        [APPLICATION_NAME],
    )
    return rows[0][0] if rows else None


def wait_until(check, what: str):
    deadline = time.monotonic() + WAIT
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"waited {WAIT:.0f} s for {what}")
        time.sleep(0.05)


class InBackground(threading.Thread):
    """A request sent from a thread, so the test can act on the database while it waits."""

    def __init__(self, send) -> None:
        super().__init__(daemon=True)
        self.send, self.reply, self.error = send, None, None
        self.start()

    def run(self) -> None:
        try:
            self.reply = self.send()
        except BaseException as exc:  # reported by result()
            self.error = exc

    def result(self):
        self.join(timeout=WAIT * 2)
        assert not self.is_alive(), "the request did not finish"
        if self.error is not None:
            raise self.error
        return self.reply


def hold_lock(cluster: Cluster, mode: str) -> psycopg.Connection:
    """A transaction holding a table lock on the jobs: SHARE lets reads through and makes
    writes wait; ACCESS EXCLUSIVE makes everything wait."""
    conn = psycopg.connect(cluster.url(DB))
    conn.execute(f"LOCK TABLE {SCHEMA}._private_jobs IN {mode} MODE")
    return conn


# -- down, restarting, full ------------------------------------------------------------------------


def test_database_down_at_start__503_with_what_to_check__then_recovers(
    cluster: Cluster, tmp_path: Path
):
    cluster.stop()
    console = start_console(cluster.url(DB), tmp_path / "console.log")
    try:
        visitor = Browser(console.base)
        login_page = visitor.get("/login/")  # no session yet: renders without the database
        assert login_page.status == 200 and "Log in" in login_page.text
        assert visitor.get("/").status == 302  # to the login page, not an error
        health = visitor.get("/healthz")
        assert health.status == 503 and '"database": "unreachable"' in health.text
        reply = visitor.post("/login/", {"username": "faults", "password": "fault-tolerant-9"})
        assert_unavailable(reply, check="pg_isready")

        cluster.start()
        visitor.login()
        assert visitor.get("/").status == 200
        assert visitor.get("/jobs/").status == 200
        assert console.process.poll() is None  # the same process throughout
    finally:
        console.stop()
    assert "Traceback" not in console.output()


def test_database_down_mid_session__503__then_same_session_works_again(
    cluster: Cluster, console: ConsoleProcess, browser: Browser
):
    assert browser.get("/").status == 200
    cluster.stop()
    for page in ("/", "/jobs/", "/workers/", "/audit/", "/login/"):
        assert_unavailable(browser.get(page), check="reconnects by itself")
    # A write while down: no half-done change, and the page says so.
    reply = browser.post("/jobs/actions/", [("action", "run_now"), ("scope", "ids"), ("ids", 1)])
    assert_unavailable(reply, check="pg_isready")
    assert "nothing is half-done" in reply.text

    health = Browser(console.base).get("/healthz")  # a load balancer's probe, no session
    assert health.status == 503 and '"database": "unreachable"' in health.text

    cluster.start()
    assert Browser(console.base).get("/healthz").status == 200
    assert browser.get("/").status == 200  # the session outlived the outage
    assert browser.get("/jobs/").status == 200
    assert console.process.poll() is None


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_restart__first_request_after_it_works(
    cluster: Cluster, console: ConsoleProcess, browser: Browser, mode: str
):
    """The console's persistent connection dies with the restart (CONN_MAX_AGE keeps it); the
    health check at the start of the next request notices and opens a new one."""
    assert browser.get("/jobs/").status == 200
    cluster.stop(mode)  # fast: an operator's restart; immediate: a crash and recovery
    cluster.start()
    assert browser.get("/jobs/").status == 200
    assert browser.get("/").status == 200


def test_too_many_connections__503_naming_the_cause__then_recovers(
    cluster: Cluster, console: ConsoleProcess, browser: Browser
):
    cluster.stop()  # the console must open a new connection when the server is full
    cluster.start()
    hogs = []
    try:
        while True:
            try:
                hogs.append(cluster.connect())
            except psycopg.OperationalError as exc:
                assert "too many" in str(exc)
                break
            assert len(hogs) <= cluster.max_connections, "max_connections was never reached"
        reply = browser.get("/jobs/")
        assert_unavailable(reply, check="max_connections")
        assert "too many clients" in reply.text
    finally:
        for conn in hogs:
            conn.close()
    assert browser.get("/jobs/").status == 200


# -- the statement timeout ------------------------------------------------------------------------


def test_read_cancelled_at_statement_timeout__504_took_too_long(cluster: Cluster, tmp_path: Path):
    console = start_console(
        cluster.url(DB), tmp_path / "console.log", READ_STATEMENT_TIMEOUT_MS="100"
    )
    try:
        browser = Browser(console.base)
        browser.login()
        lock = hold_lock(cluster, "ACCESS EXCLUSIVE")  # every read of the jobs waits
        try:
            reply = browser.get("/jobs/?key=slow-report&state=ready")
        finally:
            lock.close()
        assert reply.status == 504, (reply.status, reply.text[:3000])
        assert "This query took too long" in reply.text
        assert "Narrow the filters" in reply.text
        assert "/jobs/?key=slow-report&amp;state=ready" in reply.text  # the filters are kept
        assert browser.get("/jobs/?key=slow-report&state=ready").status == 200
    finally:
        console.stop()


def test_write_cancelled_at_statement_timeout__part_rolled_back_and_audited_failed(
    cluster: Cluster, tmp_path: Path
):
    console = start_console(
        cluster.url(DB), tmp_path / "console.log", READ_STATEMENT_TIMEOUT_MS="100"
    )
    try:
        browser = Browser(console.base)
        browser.login()
        ids = add_jobs(cluster, "fault_timeout", 3)
        token = preview_run_now(browser, ids=ids)
        lock = hold_lock(cluster, "SHARE")  # reads pass, the action's UPDATE waits
        try:
            reply = confirm_run_now(browser, token, ids=ids)
        finally:
            lock.close()
        assert reply.status == 302, (reply.status, reply.text[:3000])
        entries = audit_entries(cluster, "run_now")
        assert len(entries) == 1 and entries[0][0] == "failed"
        assert "statement timeout" in entries[0][3]
        assert run_ats_in_future(cluster, ids) == 3  # nothing changed
    finally:
        console.stop()
        cluster.sql(f"DELETE FROM {AUDIT}", dbname=DB)


# -- bulk actions interrupted ---------------------------------------------------------------------


def test_connection_killed_inside_a_chunk__rolled_back_and_audited_failed(
    cluster: Cluster, console: ConsoleProcess, browser: Browser
):
    ids = add_jobs(cluster, "fault_kill", 5)
    token = preview_run_now(browser, ids=ids)
    lock = hold_lock(cluster, "SHARE")
    try:
        confirm = InBackground(lambda: confirm_run_now(browser, token, ids=ids))
        pid = wait_until(lambda: console_backend_waiting(cluster), "the action to wait")
        cluster.sql("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        lock.close()
    reply = confirm.result()
    assert reply.status == 302, (reply.status, reply.text[:3000])  # back, with the message
    entries = audit_entries(cluster, "run_now")
    assert [e[0] for e in entries] == ["failed"]
    assert "terminat" in entries[0][3]
    assert run_ats_in_future(cluster, ids) == 5

    # The console is fine afterwards, and the action can be done (once) from a new preview.
    assert confirm_run_now(browser, preview_run_now(browser, ids=ids), ids=ids).status == 302
    assert [e[0] for e in audit_entries(cluster, "run_now")] == ["failed", "done"]
    assert run_ats_in_future(cluster, ids) == 0
    cluster.sql(f"DELETE FROM {AUDIT}", dbname=DB)


def test_database_stopped_inside_a_chunk__nothing_changed__logged__confirmation_still_usable(
    cluster: Cluster, console: ConsoleProcess, browser: Browser
):
    """The console's own database is the one that went: no audit entry can be written. The
    part is rolled back, the log says it could not be audited, and since the session was not
    saved either the same confirmation works once the database is back: the audit log and the
    jobs agree at every step."""
    ids = add_jobs(cluster, "fault_stop", 4)
    token = preview_run_now(browser, ids=ids)
    lock = hold_lock(cluster, "SHARE")
    confirm = InBackground(lambda: confirm_run_now(browser, token, ids=ids))
    wait_until(lambda: console_backend_waiting(cluster), "the action to wait")
    cluster.stop()  # terminates the waiting action and the lock holder alike
    lock.close()
    reply = confirm.result()
    assert_unavailable(reply, check="pg_isready")
    assert "could not be audited" in console.output()

    cluster.start()
    assert audit_entries(cluster, "run_now") == []
    assert run_ats_in_future(cluster, ids) == 4
    again = confirm_run_now(browser, token, ids=ids)  # the same confirmation, once
    assert again.status == 302, (again.status, again.text[:3000])
    assert [e[0] for e in audit_entries(cluster, "run_now")] == ["done"]
    assert run_ats_in_future(cluster, ids) == 0
    used = confirm_run_now(browser, token, ids=ids)
    assert used.status == 400 and "already used" in used.text
    cluster.sql(f"DELETE FROM {AUDIT}", dbname=DB)


@pytest.mark.parametrize("fault", ["restart", "down_then_up"])
def test_database_fault_between_chunks__action_resumes_each_part_once(
    cluster: Cluster, tmp_path: Path, fault: str
):
    """A 2,500-job action runs in three parts of at most 1,000. With ACTION_STEP_SECONDS=1 and
    the first part held on a lock past that budget, the first answer is the progress page after
    part 1. The database then restarts (or stays down for a request) before "continue"."""
    console = start_console(cluster.url(DB), tmp_path / "console.log", ACTION_STEP_SECONDS="1")
    try:
        browser = Browser(console.base)
        browser.login()
        ids = add_jobs(cluster, "fault_between", 2_500)
        token = preview_run_now(browser, task="fault_between")
        lock = hold_lock(cluster, "SHARE")
        try:
            confirm = InBackground(lambda: confirm_run_now(browser, token, task="fault_between"))
            wait_until(lambda: console_backend_waiting(cluster), "the action to wait")
            time.sleep(1.2)  # past the step budget: the console answers after part 1
        finally:
            lock.close()
        progress = confirm.result()
        assert progress.status == 200 and "in progress" in progress.text, progress.text[:3000]
        batch = hidden_field(progress.text, "batch")
        assert [e[0] for e in audit_entries(cluster, "run_now")] == ["done"]

        cluster.stop()
        if fault == "down_then_up":
            reply = browser.post("/jobs/actions/continue/", {"batch": batch})
            assert_unavailable(reply, check="pg_isready")
        cluster.start()
        reply = browser.post("/jobs/actions/continue/", {"batch": batch})
        while reply.status == 200:  # more progress pages, if the machine is slow
            reply = browser.post("/jobs/actions/continue/", {"batch": batch})
        assert reply.status == 302, (reply.status, reply.text[:3000])

        entries = audit_entries(cluster, "run_now")
        assert [(e[0], e[1]) for e in entries] == [("done", "1"), ("done", "2"), ("done", "3")]
        assert sum(e[2] for e in entries) == 2_500
        assert len({e[4] for e in entries}) == 1  # one batch
        assert run_ats_in_future(cluster, ids) == 0
    finally:
        console.stop()
        cluster.sql(f"DELETE FROM {AUDIT}", dbname=DB)
