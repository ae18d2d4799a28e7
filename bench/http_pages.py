"""`bench/run.py --http`: every page of the suite over HTTP, through the production server.

The console runs under `manage.py serve` (gunicorn, bench/serve_bench.py) on a free port
against the bench database; an operator and an admin log in once through the login form, each
with one keep-alive connection (bench/http_client.py); then every page of run.py's suite is
requested over that connection: the first request (cold: a new gunicorn worker, its first
database connection, empty caches), the warm-ups, then the timed runs (median, p95). The time
is the client's wall time, request sent to body read, so it includes gunicorn, the loopback
network and the body's size, which the in-process mode leaves out. A page that comes without its
counts (a large table nobody watched lately) and asks for them on load is timed until they are
shown: the client makes htmx's request at once (bench/http_client.py); "paint" is the page
alone.

Unlike the in-process mode the server keeps the console's defaults, except that with
`--sample-reuse 0` (the default) every request reads its own sample and takes its own snapshot
(SHARED_SNAPSHOT_SECONDS=0): the cost one refresh pays. `--sample-reuse 5` measures the console
as it runs (every reading shared for its 5-s refresh interval, its default: the server gets
SHARED_SNAPSHOT_SECONDS=N). With it, `--after-interval` waits out the interval after the timed
runs and times one more request: the first of the next interval, which the console answers
from the last snapshot and renews after the response. No floor or naive column here: the
production server does not mount the naive admin.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from typing import Any

import run
import serve_bench
from http_client import Session
from serve_bench import ADMIN, OPERATOR


def measure_http(
    probe: run.Probe, runs: int, warmups: int, after_interval: float = 0
) -> run.Measurement:
    """The first request alone, then warm-ups, then the timed runs (then, with
    `after_interval`, one request that many seconds after the last)."""
    started = time.perf_counter()
    first = probe.fetch()
    first_ms = first.elapsed_ms or (time.perf_counter() - started) * 1000
    if isinstance(first.status, str) and first.status.startswith("skipped"):
        return run.Measurement(probe.name, probe.target, first.status, None)
    measurement = run.measure(probe, runs, warmups, queries=False)
    measurement.first_ms = round(first_ms, 2)
    if first.painted_ms is not None:
        measurement.first_paint_ms = round(first.painted_ms, 2)
    if first.status != 200 and measurement.status == 200:
        measurement.status = first.status
    if after_interval > 0:
        time.sleep(after_interval)
        started = time.perf_counter()
        later = probe.fetch()
        later_ms = later.elapsed_ms or (time.perf_counter() - started) * 1000
        measurement.after_interval_ms = round(later_ms, 2)
    return measurement


def server_stats(args: argparse.Namespace) -> dict[str, float]:
    """The worker_admin.stats constants the server runs with (see the module docstring)."""
    # 0: every request its own sample; else the readings follow SHARED_SNAPSHOT_SECONDS (env)
    overrides: dict[str, float] = {"SAMPLE_REUSE_SECONDS": 0} if args.sample_reuse == 0 else {}
    if args.exact_row_limit:
        overrides["EXACT_ROW_LIMIT"] = args.exact_row_limit
        overrides["SAMPLE_ROWS"] = max(200, args.exact_row_limit // 2)
    return overrides


def print_table(measurements: list[run.Measurement]) -> None:
    width = max(len(m.name) for m in measurements)
    header = (
        f"{'page':<{width}}  {'paint ms':>8}  {'first ms':>8}  {'median ms':>9}  {'p95 ms':>8}  "
    )
    header += f"{'next ms':>7}  {'rows':>5}  {'load':>4}  status"
    print(header)
    print("-" * len(header))
    for m in measurements:
        print(
            f"{m.name:<{width}}  {run.fmt(m.first_paint_ms):>8}  {run.fmt(m.first_ms):>8}  "
            f"{run.fmt(m.median_ms):>9}  "
            f"{run.fmt(m.p95_ms):>8}  {run.fmt(m.after_interval_ms):>7}  {run.fmt(m.rows):>5}  "
            f"{run.fmt(m.load_average, '{:.1f}'):>4}  {m.status}"
        )
    print("over HTTP through gunicorn (manage.py serve), one keep-alive connection per user;")
    print("first = the first request to the page, until its counts are shown: a page that")
    print("came without them (paint = its own time) asked for them on load, as htmx does;")
    print("next = one request after the snapshot interval (--after-interval); load: the")
    print("1-minute load average after it")


def main(args: argparse.Namespace, database_url: str, targets, extra, walker) -> dict[str, Any]:
    """Measure every page over HTTP; return the results' JSON (run.py writes it)."""
    load_before = list(os.getloadavg())
    started_at = datetime.now(UTC)
    server = serve_bench.Server(
        database_url,
        workers=args.http_workers,
        threads=args.http_threads,
        schema=args.schema,
        stats=server_stats(args),
        env={"SHARED_SNAPSHOT_SECONDS": str(round(args.sample_reuse))},
    )
    # The sessions exist (not yet logged in) so that the probes can be built first: the
    # in-process walk to the deep pages must happen before `console_user` sets the bench
    # user's password, which ends the in-process client's session.
    operator, admin = Session(server.base_url), Session(server.base_url)
    walk = args.deep_pages if not args.only or "Older" in args.only else 0
    pages = run.console_pages(operator, admin, targets, extra, walk, walker=walker)
    if args.only:
        pages = [(key, probe) for key, probe in pages if args.only in probe.name]
    with server:
        server.login(OPERATOR, operator)
        server.login(ADMIN, admin)
        print(f"serving at {server.base_url}: {args.http_workers} gunicorn workers × ", end="")
        print(f"{args.http_threads} threads; logged in as {OPERATOR} and {ADMIN}")
        measurements = []
        for _, probe in pages:
            print(f"  {probe.name} …", flush=True)
            wait = args.sample_reuse + 0.5 if args.after_interval else 0
            measurements.append(measure_http(probe, args.runs, args.warmups, wait))
        requests = operator.requests + admin.requests
        connections = operator.reconnects + admin.reconnects
    print()
    print_table(measurements)
    load_after = list(os.getloadavg())
    print(f"\n{requests:,} requests over {connections} connection(s); load average (1, 5, 15 min)")
    print(f"before {fmt_load(load_before)}, after {fmt_load(load_after)} ({os.cpu_count()} CPUs)")
    return {
        "mode": "http",
        "started_at": started_at.isoformat(timespec="seconds"),
        "server": {
            "command": "manage.py serve",
            "workers": args.http_workers,
            "threads": args.http_threads,
            "stats": server_stats(args),
        },
        "load_average_before": load_before,
        "load_average_after": load_after,
        "requests": requests,
        "connections": connections,
        "pages": [m.as_json() for m in measurements],
    }


def fmt_load(load: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)
