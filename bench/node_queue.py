"""The queue side of the observer benchmark (bench/observer.py): its scratch database, a fresh
queue of no-op jobs for each window, real Node graphile-worker processes draining it, and the
count of jobs they completed. Nothing here knows about the console.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build_dataset  # noqa: E402

from worker_admin.installer import migrate  # noqa: E402

NODE_DIR = ROOT / "tests" / "node"
CLI = NODE_DIR / "node_modules" / ".bin" / "graphile-worker"
NOOP_TASK = "module.exports = async () => {};\n"


def ensure_installed() -> None:
    """The pinned npm graphile-worker (tests/node), installed on first use."""
    if not CLI.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)


def prepare(server_url: str, database: str) -> str:
    """Create (or reuse) the marked scratch database with the worker schema; its conninfo."""
    with psycopg.connect(server_url, autocommit=True) as admin:
        exists = admin.execute(
            "select 1 from pg_database where datname = %s", [database]
        ).fetchone()
        if not exists:
            admin.execute(f'create database "{database}"')
            build_dataset._mark(
                admin, database, {"marker": build_dataset.MARKER, "state": "observer"}
            )
    conninfo = build_dataset.scratch_conninfo(server_url, database)
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('graphile_worker._private_jobs')")
        if cur.fetchone()[0] is None:
            migrate(cur, "graphile_worker", recovery=True)
        conn.commit()
    return conninfo


def top_up(conninfo: str, jobs: int) -> int:
    """Start a window from the same queue every time: exactly `jobs` fresh no-op jobs in a new
    table, vacuumed and analysed, right after a checkpoint; return how many wait.

    Each of these takes out a source of noise larger than the effect measured. Jobs left over
    from the previous window, and their dead rows (autovacuum is off on the benchmark machine),
    would make every window's table different; and the first change to a page after a
    checkpoint writes the whole page to the WAL, so a window that a timed checkpoint (every 5
    minutes) fell into flushed several times the WAL of one that it did not."""
    with psycopg.connect(conninfo) as conn:
        conn.execute("set lock_timeout = '10s'")
        conn.execute(
            "insert into graphile_worker._private_tasks (identifier) values ('noop') "
            "on conflict do nothing"
        )
        (task_id,) = conn.execute(
            "select id from graphile_worker._private_tasks where identifier = 'noop'"
        ).fetchone()
        conn.execute("truncate graphile_worker._private_jobs")
        conn.execute(
            "insert into graphile_worker._private_jobs (task_id, payload) "
            "select %s, '{}'::json from generate_series(1, %s)",
            [task_id, jobs],
        )
        conn.commit()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("vacuum (analyze) graphile_worker._private_jobs")
        # Neither superuser nor pg_checkpoint: the windows are noisier, not wrong.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("checkpoint")
    return jobs


def completed(conninfo: str) -> int:
    """Jobs completed so far: graphile-worker deletes a job when it completes."""
    with psycopg.connect(conninfo) as conn:
        (n,) = conn.execute(
            "select coalesce(sum(n_tup_del), 0) from pg_stat_user_tables "
            "where schemaname = 'graphile_worker' and relname = '_private_jobs'"
        ).fetchone()
    return int(n)


def ran_dry(conninfo: str, slots: int) -> bool:
    """Whether fewer jobs are left than the workers can run at once (`slots`): then the window
    measured the size of the queue, not the workers' speed (a fast server drains a small
    --jobs)."""
    with psycopg.connect(conninfo) as conn:
        (left,) = conn.execute(
            "select count(*) from (select 1 from graphile_worker._private_jobs limit %s) j",
            [slots],
        ).fetchone()
    return left < slots


def start_workers(conninfo: str, processes: int, concurrency: int, workdir: Path) -> list:
    tasks = workdir / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "noop.cjs").write_text(NOOP_TASK)
    env = {**os.environ, "DATABASE_URL": node_url(conninfo), "NO_LOG_SUCCESS": "1"}
    return [
        subprocess.Popen(
            [str(CLI), "--jobs", str(concurrency), "--schema", "graphile_worker"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]


def node_url(conninfo: str) -> str:
    """node-postgres takes only URLs: every part percent-encoded, so a socket directory as the
    host (the embedded server) stays a host rather than becoming part of the path."""
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = quote(str(params.get("user", "postgres")), safe="")
    password = params.get("password")
    auth = f"{user}:{quote(str(password), safe='')}" if password else user
    host = quote(str(params.get("host", "127.0.0.1")), safe="")
    port = params.get("port", "5432")
    return f"postgresql://{auth}@{host}:{port}/{quote(str(params['dbname']), safe='')}"


def throughput(conninfo: str, seconds: float) -> float:
    before, started = completed(conninfo), time.monotonic()
    time.sleep(seconds)
    return (completed(conninfo) - before) / (time.monotonic() - started)


def stop_workers(workers: list) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
