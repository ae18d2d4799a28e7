"""What one poll costs the server: CPU per request of gunicorn and of its PostgreSQL backends.

    .venv/bin/python bench/poll_cost.py --database gw_poll [--users 20 40] [--paths / /jobs/]

For each user count, `manage.py serve` (bench/serve_bench.py) is polled over HTTP as open tabs
poll it (observer_http: htmx headers, If-None-Match) every --poll-seconds for --seconds, and
the CPU its processes and their database backends used is divided by the requests served.
Between two user counts the difference is the cost of one more request; what does not grow
with the users (the shared snapshots, the history recorder) stays in the intercept. The data
does not change here unless something else writes to the database: the figure is the cost of
serving a poll, not of recomputing what it shows (bench/observer.py measures both, with real
workers draining the queue).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_dataset
import observer_http
import serve_bench


def measure(conninfo: str, users: int, seconds: float, poll_seconds: float) -> dict:
    with serve_bench.Server(conninfo) as server:
        sessions = observer_http.log_in_users(server, users)
        stop, log = threading.Event(), observer_http.PollLog()
        meter = observer_http.CpuMeter(server, conninfo)
        threads = observer_http.start_polling(sessions, poll_seconds, stop, log)
        try:
            time.sleep(poll_seconds + 2)  # every user has polled once
            log.answers.clear()
            server_before, backends_before = _split(server, meter)
            time.sleep(seconds)
            server_after, backends_after = _split(server, meter)
            served = len(log.answers)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    return {
        "users": users,
        "requests": served,
        "server_cpu_s": server_after - server_before,
        "database_cpu_s": backends_after - backends_before,
        "statuses": log.summary(seconds, users)["statuses"],
    }


def _split(server: serve_bench.Server, meter: observer_http.CpuMeter) -> tuple[float, float]:
    """CPU so far of the server's processes, and of their PostgreSQL backends."""
    backends = meter._backends()
    return server.cpu_seconds([]), server.cpu_seconds(backends) - server.cpu_seconds([])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server-url", default=os.environ.get("BENCH_SERVER_URL", build_dataset.DEFAULT_SERVER_URL)
    )
    parser.add_argument("--database", required=True, help="a bench database (build_dataset.py)")
    parser.add_argument("--users", type=int, nargs="+", default=[20, 40])
    parser.add_argument("--paths", nargs="+", help="what each user polls (default / and /jobs/)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.paths:
        observer_http.POLLS = tuple((path, "poll") for path in args.paths)
    conninfo = build_dataset.scratch_conninfo(args.server_url, args.database)
    found = [measure(conninfo, n, args.seconds, args.poll_seconds) for n in args.users]
    print(f"{'users':>5} {'requests':>8} {'server ms/req':>13} {'database ms/req':>15}  statuses")
    for row in found:
        n = max(row["requests"], 1)
        print(
            f"{row['users']:>5} {row['requests']:>8} {row['server_cpu_s'] / n * 1000:>13.2f} "
            f"{row['database_cpu_s'] / n * 1000:>15.2f}  {row['statuses']}"
        )
    if len(found) >= 2:
        low, high = found[0], found[-1]
        more = max(high["requests"] - low["requests"], 1)
        server = (high["server_cpu_s"] - low["server_cpu_s"]) / more * 1000
        database = (high["database_cpu_s"] - low["database_cpu_s"]) / more * 1000
        print(f"one more request: {server:.2f} ms server CPU, {database:.2f} ms database CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
