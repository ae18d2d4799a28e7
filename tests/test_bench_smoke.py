"""The scale benchmark, small: bench/run.py end to end on a few thousand jobs, so it cannot rot.

It builds its own marked scratch database (next to the test database, on the same server),
measures every page once in the three columns (console, floor, naive admin) and checks that
every page answered as expected; the same over HTTP through the production server
(`run.py --http`); the periodic dataset and the accuracy report on it; and the observer over
HTTP with real Node workers. Times are printed by the benchmark, never asserted here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.dbconn import scratch_name, server_conninfo

# Builds its own connection strings: CI runs it on the embedded PostgreSQL too.
pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[1]
SMOKE_DATABASE = scratch_name("graphile_console_bench_smoke")
HTTP_DATABASE = scratch_name("gw_bench_http_smoke")
PERIODIC_DATABASE = scratch_name("gw_bench_http_periodic_smoke")
OBSERVER_DATABASE = scratch_name("gw_bench_http_observer_smoke")
SCRATCH = (SMOKE_DATABASE, HTTP_DATABASE, PERIODIC_DATABASE, OBSERVER_DATABASE)


@pytest.fixture
def server_url(db):
    url = server_conninfo(dbname="postgres")
    yield url
    with psycopg.connect(url, autocommit=True) as admin:
        for name in SCRATCH:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_bench_runs_end_to_end_on_a_small_dataset(server_url, tmp_path):
    output = tmp_path / "smoke.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--build",
            "--rebuild",
            "--jobs",
            "3000",
            "--database",
            SMOKE_DATABASE,
            "--server-url",
            server_url,
            "--runs",
            "1",
            "--warmups",
            "0",
            "--deep-pages",
            "2",
            "--naive-runs",
            "1",
            "--exact-row-limit",
            "1000",  # the console's large-table paths (samples, bounds) on 3,000 rows
            "--no-observer",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "console/floor" in done.stdout and "naive/console" in done.stdout
    results = json.loads(output.read_text())
    statuses = {page["name"]: page["status"] for page in results["pages"]}
    refused = [name for name in statuses if "over the limit" in name]
    # Every page answers 200; the hot-task preview is under the bulk limit on 3,000 jobs too.
    assert {name: s for name, s in statuses.items() if s != 200} == {}, statuses
    assert refused  # the probe is there
    for row in results["comparison"]:
        for column in ("floor", "naive"):
            if row[column] is not None:
                assert row[column]["status"] == 200, (row["page"], column, row[column])
    assert results["dataset"]["jobs"] == 3000


def test_bench_http_mode__every_page_over_the_production_server(server_url, tmp_path):
    output = tmp_path / "http.json"
    done = bench(
        "run.py",
        "--http",
        *("--build", "--rebuild", "--jobs", "3000", "--database", HTTP_DATABASE),
        *("--server-url", server_url, "--runs", "2", "--warmups", "0", "--deep-pages", "2"),
        *("--exact-row-limit", "1000", "--output", str(output)),
    )
    assert "over HTTP through gunicorn" in done.stdout
    results = json.loads(output.read_text())
    assert results["mode"] == "http" and results["server"]["command"] == "manage.py serve"
    statuses = {page["name"]: page["status"] for page in results["pages"]}
    assert {name: s for name, s in statuses.items() if s != 200} == {}, statuses
    assert any("Older" in name for name in statuses)  # the deep pages, found in-process
    for page in results["pages"]:
        assert len(page["samples_ms"]) == 2 and page["first_ms"] is not None, page
    # One login each for the operator and the admin, then keep-alive: far fewer connections
    # than requests.
    assert results["requests"] > 3 * results["connections"]
    assert len(results["load_average_before"]) == len(results["load_average_after"]) == 3


@pytest.mark.parametrize("npm", [False, pytest.param(True, marks=pytest.mark.node)])
def test_periodic_dataset__accuracy_intervals_hold_the_truth(server_url, tmp_path, npm):
    if npm:
        from tests.nodejs import ensure_graphile_worker

        ensure_graphile_worker()
    built = bench(
        "build_dataset.py",
        "--periodic",
        *(["--npm"] if npm else []),
        *("--rebuild", "--jobs", "5000", "--database", PERIODIC_DATABASE),
        *("--server-url", server_url),
    )
    installer = "npm graphile-worker 0.18.0" if npm else "console installer"
    assert f"schema by the {installer}" in built.stdout
    output = tmp_path / "accuracy.json"
    url = psycopg.conninfo.make_conninfo(server_url, dbname=PERIODIC_DATABASE)
    done = bench(
        "accuracy.py",
        *("--database-url", url, "--exact-row-limit", "1000", "--windows", "10"),
        *("--draws", "10", "--all", "--output", str(output)),
    )
    result = json.loads(output.read_text())
    truth = {row["count"]: row["true"] for row in result["first_draw"] if row["kind"] == "state"}
    # The pattern, per block of 1,000 ids: 10 locked, 40 failed, 100 retrying, 300 scheduled,
    # 550 ready; retries are scheduled too.
    assert truth == {
        "total": 5000,
        "locked": 50,
        "failed": 200,
        "retrying": 500,
        "scheduled": 2000,
        "ready": 2750,
    }
    tasks = {row["name"] for row in result["first_draw"] if row["kind"] == "task"}
    assert len(tasks) == 7
    # The intervals say 95 %: on a sample that sees whole runs of one state, they must still
    # hold the truth about that often, for states, tasks and queues alike.
    for kind in ("state", "task", "queue"):
        score = result["by_kind"][kind]
        assert score["total"] > 0 and score["held"] / score["total"] >= 0.9, (kind, score)
    assert "OUTSIDE" in done.stdout or "inside" in done.stdout


@pytest.mark.node
def test_observer_over_http__users_poll_while_node_workers_drain(server_url, tmp_path):
    from tests.nodejs import ensure_graphile_worker

    ensure_graphile_worker()
    output = tmp_path / "observer.json"
    done = bench(
        "observer.py",
        "--http",
        *("--server-url", server_url, "--database", OBSERVER_DATABASE),
        *("--seconds", "3", "--jobs", "200000", "--users", "3", "--poll-seconds", "1"),
        *("--processes", "1", "--concurrency", "2", "--rounds", "2", "--warmup-windows", "0"),
        *("--output", str(output)),
    )
    results = json.loads(output.read_text())
    assert results["mode"] == "http" and results["users"] == 3
    # ABBA: alone, watched, watched, alone
    assert [w["phase"] for w in results["windows"]] == [
        "alone",
        "with console",
        "with console",
        "alone",
    ]
    assert not any(w["ran_dry"] for w in results["windows"]), results["windows"]
    for phase in ("alone", "with console"):
        assert results[phase]["jobs_per_second"] > 0, results  # the real workers ran
    polls = results["with console"]["polls"]
    assert polls["requests"] > 0 and polls["errors"] == []
    assert set(polls["statuses"]) <= {"200", "304"}, polls
    assert set(polls["by_path"]) == {"/", "/jobs/"}
    assert results["with console"]["console_cpu_seconds"] > 0  # it served the polls
    assert "per watching user per minute" in done.stdout
    assert results["ratio_standard_error"] >= 0 and "standard error" in done.stdout


def test_observer_ratio_error__from_the_windows_spread(monkeypatch):
    """The observer's error bar (bench/observer.py ratio_error): none from one window a phase,
    zero for identical windows, and the quadrature sum of the two means' relative errors."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from observer import ratio_error

    def windows(alone, watched):
        return [{"phase": "alone", "jobs_per_second": r} for r in alone] + [
            {"phase": "with console", "jobs_per_second": r} for r in watched
        ]

    assert ratio_error(windows([100], [90]), 0.9) is None
    assert ratio_error(windows([100, 100], [90, 90]), 0.9) == 0
    # each side: stdev/mean = (10 / sqrt 2) / 100 over two windows; the ratio is 1.0
    got = ratio_error(windows([95, 105], [95, 105]), 1.0)
    assert abs(got - (2 * (10 / 2**0.5 / 100) ** 2 / 2) ** 0.5) < 1e-9


def test_poll_cost__server_and_database_cpu_per_poll(server_url):
    bench(
        "build_dataset.py",
        "--rebuild",
        "--jobs",
        "2000",
        "--database",
        HTTP_DATABASE,
        "--server-url",
        server_url,
    )
    done = bench(
        "poll_cost.py",
        *("--server-url", server_url, "--database", HTTP_DATABASE),
        *("--users", "1", "2", "--seconds", "2", "--poll-seconds", "1"),
    )
    rows = [line.split() for line in done.stdout.splitlines()[1:3]]
    assert [row[0] for row in rows] == ["1", "2"], done.stdout
    assert all(int(row[1]) > 0 for row in rows), done.stdout  # polls were served
    # Answered (200, or 304 once a tab holds the current snapshot's ETag), never an error.
    statuses = set(re.findall(r"'(\d{3})'", done.stdout))
    assert statuses and statuses <= {"200", "304"}, done.stdout
    assert "one more request:" in done.stdout
