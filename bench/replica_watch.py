"""Users watching the console with a replica configured: does any read land on the primary?

    .venv/bin/python bench/replica_watch.py                     # 20 users, 10 minutes
    .venv/bin/python bench/replica_watch.py --users 3 --minutes 0.5 --jobs 2000

It starts a throwaway primary and a real streaming replica of it (tests/replicadb.py), both
with pg_stat_statements preloaded, builds a dataset on the primary (bench/build_dataset.py)
before the base backup, and gives the console a login role of its own (`console_watch`, with
the privileges an operator's console has on the worker schema) and an application_name of its
own. The console's tables (users, sessions, audit, cache, history) go to a scratch database on
another server (--console-server-url, the machine's 5432 by default), so that nothing the
console runs for them is counted. While a writer keeps the primary busy (it adds, completes and
fails jobs through the schema's functions, as the `postgres` role), the production server
(`manage.py serve`, DATABASE_REPLICA_URL set) is polled by --users logged-in users, the overview
and the jobs page every --poll-seconds with htmx's headers, as bench/observer_http.py's users
do. pg_stat_statements is reset on both servers just before the users log in;
pg_stat_activity is sampled on both every second.

The report: every statement the console's role ran on each server, calls per normalised
statement, by class (bench/watch_statements.py): worker table reads, catalog/statistics reads,
writes, setup noise; the same classes from the activity samples; requests, statuses and
latency. Exit status 1 when a worker table read by the console ran on the primary, or when the
run proves nothing (no worker table read on the replica, requests that failed).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import build_dataset  # noqa: E402
import observer_http  # noqa: E402
import serve_bench  # noqa: E402
import watch_statements as ws  # noqa: E402

from tests.replicadb import start_pair  # noqa: E402

DATASET = "gw_watch"
SCHEMA = "graphile_worker"
ROLE = "console_watch"
APPLICATION_NAME = "gc-replica-watch"
SERVER_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "track_activity_query_size": "16384",  # whole statements in the pg_stat_activity samples
}
GOOD_STATUSES = {"200", "304"}


@dataclass(frozen=True)
class WatchOptions:
    users: int = 20
    seconds: float = 600.0
    jobs: int = 100_000
    poll_seconds: float = 2.0
    console_server_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    console_database: str = "gc_replica_watch_console"
    writer_interval: float = 0.2


# -- set-up --------------------------------------------------------------------------------


def prepare_primary(jobs: int):
    """What runs on the primary before its base backup: the dataset, the extension, the role."""

    def prepare(url: str) -> None:
        server = make_conninfo(url, dbname="postgres")
        options = build_dataset.BuildOptions(server, DATASET, jobs, rebuild=False, schema=SCHEMA)
        print(build_dataset.summary(build_dataset.build(options)), flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            for statement in role_statements():
                conn.execute(statement)

    return prepare


def role_statements() -> list[sql.Composed]:
    """A login role with what the console needs on the worker schema to read and to act
    (BYPASSRLS: row-level security is on for the jobs table, with no policy for other roles)."""
    role, schema = sql.Identifier(ROLE), sql.Identifier(SCHEMA)
    return [
        sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(role),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
            schema, role
        ),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {} TO {}").format(
            schema, role
        ),
        sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(schema, role),
    ]


def as_console(url: str) -> str:
    return make_conninfo(url, user=ROLE, application_name=APPLICATION_NAME)


def console_database(options: WatchOptions, *, drop: bool = False) -> str:
    """The scratch database for the console's own tables (created empty, or dropped)."""
    name = sql.Identifier(options.console_database)
    with psycopg.connect(options.console_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if not drop:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    return make_conninfo(options.console_server_url, dbname=options.console_database)


# -- the primary kept busy -----------------------------------------------------------------


class Writer:
    """Adds three jobs, completes two and permanently fails one every `interval`, through the
    schema's own functions, as `postgres`: inserts, deletes and updates on the primary."""

    def __init__(self, url: str, interval: float) -> None:
        self.url, self.interval = url, interval
        self.counts = {"added": 0, "completed": 0, "failed": 0}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        pending: deque[int] = deque()
        with psycopg.connect(
            self.url, autocommit=True, application_name="replica-watch-writer"
        ) as c:
            while not self._stop.wait(self.interval):
                try:
                    self._round(c, pending)
                except psycopg.Error as exc:
                    self.errors.append(str(exc).strip())

    def _round(self, conn: psycopg.Connection, pending: deque[int]) -> None:
        for _ in range(3):
            added = conn.execute(
                f"SELECT (j).id FROM (SELECT {SCHEMA}.add_job('watch_writer', "
                "json_build_object('at', clock_timestamp())) AS j) AS a"
            ).fetchone()[0]
            pending.append(added)
        self.counts["added"] += 3
        done = [pending.popleft() for _ in range(2)]
        conn.execute(f"SELECT {SCHEMA}.complete_jobs(%s::bigint[])", [done])
        self.counts["completed"] += 2
        failed = [pending.popleft()]
        conn.execute(f"SELECT {SCHEMA}.permanently_fail_jobs(%s::bigint[], 'watch')", [failed])
        self.counts["failed"] += 1


# -- the run -------------------------------------------------------------------------------


def run(options: WatchOptions) -> dict:
    """Set up, watch for options.seconds, and report (a JSON-ready dict)."""
    started_load = Path("/proc/loadavg").read_text().strip()
    primary, replica = start_pair(
        DATASET, prepare=prepare_primary(options.jobs), settings=SERVER_SETTINGS
    )
    console_url = console_database(options)
    try:
        return _watch(options, primary, replica, console_url, started_load)
    finally:
        replica.destroy()
        primary.destroy()
        console_database(options, drop=True)


def _watch(options: WatchOptions, primary, replica, console_url: str, load: str) -> dict:
    primary_url, replica_url = primary.url(DATASET), replica.url(DATASET)
    schema = ws.WorkerSchema.read(primary_url, SCHEMA)
    server = serve_bench.Server(
        as_console(primary_url),
        application_name=APPLICATION_NAME,
        env={
            "CONSOLE_DATABASE_URL": console_url,
            "DATABASE_REPLICA_URL": as_console(replica_url),
            "APPLICATION_NAME": APPLICATION_NAME,
        },
    )
    writer = Writer(primary_url, options.writer_interval)
    sampler = ws.ActivitySampler({"primary": primary_url, "replica": replica_url}, ROLE)
    log = observer_http.PollLog()
    stop = threading.Event()
    with server:
        writer.start()
        for url in (primary_url, replica_url):
            ws.reset(url)
        sampler.start()
        sessions = observer_http.log_in_users(server, options.users)
        threads = observer_http.start_polling(sessions, options.poll_seconds, stop, log)
        began = time.monotonic()
        stop.wait(options.seconds)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        watched = time.monotonic() - began
        sampler.stop()
        writer.stop()
        found = {
            "primary": ws.statements(primary_url, ROLE, schema),
            "replica": ws.statements(replica_url, ROLE, schema),
        }
    return report(options, found, sampler, schema, log, writer, watched, load)


def report(options, found, sampler, schema, log, writer, watched, load) -> dict:
    servers = {}
    for name, statements in found.items():
        servers[name] = {
            "statements": statements.totals(),
            "activity": sampler.classes(name, schema),
            "by_query": [
                {"class": kind, "calls": calls, "query": query}
                for kind, calls, query in statements.rows
            ],
            "worker_reads_sampled": sampler.of(name, schema, ws.WORKER_READ),
        }
    return {
        "users": options.users,
        "seconds": round(watched, 1),
        "poll_seconds": options.poll_seconds,
        "jobs": options.jobs,
        "load_before": load,
        "load_after": Path("/proc/loadavg").read_text().strip(),
        "requests": log.summary(watched, options.users),
        "writer": writer.counts | {"errors": writer.errors[:5]},
        "activity_samples": sampler.samples,
        "sampler_errors": sampler.errors[:5],
        "servers": servers,
    }


def problems(result: dict) -> list[str]:
    """Why the run fails: a worker table read on the primary, or a run that proves nothing."""
    found = []
    primary, replica = result["servers"]["primary"], result["servers"]["replica"]
    reads = [row["query"] for row in primary["by_query"] if row["class"] == ws.WORKER_READ]
    for source, queries in (("statements", reads), ("activity", primary["worker_reads_sampled"])):
        if primary[source][ws.WORKER_READ]:
            first = " ".join(queries[0].split())[:200] if queries else "?"
            found.append(f"worker table reads on the primary ({source}), e.g. {first}")
    if not replica["statements"][ws.WORKER_READ]:
        found.append("no worker table read on the replica: the replica was not read at all")
    statuses = result["requests"].get("statuses", {})
    if not statuses or set(statuses) - GOOD_STATUSES:
        found.append(f"requests answered {statuses or 'nothing'} (only 200 and 304 expected)")
    return found


# -- the printout --------------------------------------------------------------------------


def print_report(result: dict, *, top: int = 40) -> None:
    requests = result["requests"]
    print(
        f"\n{result['users']} users for {result['seconds']:.0f} s, polling every "
        f"{result['poll_seconds']:g} s; {result['jobs']:,} jobs"
    )
    print(f"load before: {result['load_before']}\nload after:  {result['load_after']}")
    print(
        f"requests: {requests.get('requests', 0)}, statuses {requests.get('statuses')}, "
        f"median {requests.get('median_ms')} ms, p95 {requests.get('p95_ms')} ms"
    )
    print(f"writer on the primary: {result['writer']}")
    print(f"pg_stat_activity samples: {result['activity_samples']} per server")
    for name, server in result["servers"].items():
        print(f"\n== {name}: the console's role ({ROLE})")
        print("   class                      statements (calls)  activity (distinct)")
        for kind in ws.CLASSES:
            print(f"   {kind:<26} {server['statements'][kind]:>18}  {server['activity'][kind]:>19}")
        for row in server["by_query"][:top]:
            query = " ".join(row["query"].split())
            print(f"   {row['calls']:>7}  {row['class']:<24} {query[:150]}")
        if len(server["by_query"]) > top:
            print(f"   … {len(server['by_query']) - top} more statements")
        for query in server["worker_reads_sampled"][:10] if name == "primary" else []:
            print(f"   sampled worker table read: {' '.join(query.split())[:300]}")


def parse_args(argv: list[str] | None = None) -> tuple[WatchOptions, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = WatchOptions()
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--minutes", type=float, default=defaults.seconds / 60)
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--poll-seconds", type=float, default=defaults.poll_seconds)
    parser.add_argument(
        "--console-server-url",
        default=defaults.console_server_url,
        help="a database on the server that holds the console's scratch database "
        "(default %(default)s)",
    )
    parser.add_argument("--console-database", default=defaults.console_database)
    parser.add_argument("--json", type=Path, help="also write the whole report here")
    args = parser.parse_args(argv)
    options = WatchOptions(
        users=args.users,
        seconds=args.minutes * 60,
        jobs=args.jobs,
        poll_seconds=args.poll_seconds,
        console_server_url=args.console_server_url,
        console_database=args.console_database,
    )
    return options, args.json


def main(argv: list[str] | None = None) -> int:
    options, json_path = parse_args(argv)
    result = run(options)
    print_report(result)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2, default=str))
    found = problems(result)
    for problem in found:
        print(f"FAIL: {problem}")
    if not found:
        print("\nOK: no worker table read by the console ran on the primary")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
