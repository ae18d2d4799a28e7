"""The scale benchmark, small: bench/run.py end to end on a few thousand jobs, so it cannot rot.

It builds its own marked scratch database (next to the test database, on the same server),
measures every page once in the three columns (console, floor, naive admin) and checks that
every page answered as expected. Times are printed by the benchmark, never asserted here.
"""

from __future__ import annotations

import json
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


@pytest.fixture
def server_url(db):
    url = server_conninfo(dbname="postgres")
    yield url
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{SMOKE_DATABASE}" WITH (FORCE)')


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
