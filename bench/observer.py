"""Observer effect: do real Node workers slow down while the console is being watched?

    .venv/bin/python bench/observer.py            # run by bench/run.py unless --no-observer

In its own scratch database (gw_bench_observer, created and marked like the others), real
graphile-worker processes (the pinned npm package in tests/node) drain no-op jobs at full speed.
Their throughput is measured twice over the same window: alone, and while this process serves a
polling load through the console (USERS users, each requesting the overview and the jobs page
every POLL_SECONDS, as open browser tabs do). The target is at least 95 % of the throughput
without the console. Each window starts from the same fresh queue (bench/node_queue.py); a window
whose queue ran dry fails the run rather than report the queue's size as the workers' speed.

    .venv/bin/python bench/observer.py --http [--users 20]

--http runs the console under its production server instead (manage.py serve, gunicorn), and
the users poll it over real HTTP, each with its own login and connection, sending If-None-Match
as the browser does (bench/observer_http.py); it also reports requests served, their median
latency, the share answered 304 and the console's CPU seconds (gunicorn + its PostgreSQL
backends) per watching user per minute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build_dataset  # noqa: E402
import node_queue  # noqa: E402
import observer_http  # noqa: E402
import serve_bench  # noqa: E402

DATABASE = "gw_bench_observer"
USERS = 20
POLL_SECONDS = 2.0


def refuse_dry(windows: list[dict]) -> None:
    dry = sum(1 for window in windows if window.get("ran_dry"))
    if dry:
        raise SystemExit(
            f"The queue ran dry in {dry} of {len(windows)} windows: their throughput is the "
            "queue's size, not the workers' speed. Run again with a larger --jobs."
        )


def polling_load(stop: threading.Event, clients: list, done: list[float]) -> list[threading.Thread]:
    """USERS threads, each one browser tab: the overview and the jobs page every POLL_SECONDS."""

    def user(client, offset: float) -> None:
        from django.db import connections

        time.sleep(offset)
        while not stop.is_set():
            started = time.monotonic()
            for path in ("/", "/jobs/"):
                begin = time.perf_counter()
                client.get(path, headers={"HX-Request": "true"})
                done.append((time.perf_counter() - begin) * 1000)
            stop.wait(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
        connections.close_all()

    threads = [
        threading.Thread(target=user, args=(client, i * POLL_SECONDS / USERS), daemon=True)
        for i, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    return threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server-url", default=os.environ.get("BENCH_SERVER_URL", build_dataset.DEFAULT_SERVER_URL)
    )
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--processes", type=int, default=2, help="Node worker processes")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per process")
    parser.add_argument("--seconds", type=float, default=30.0, help="each measured window")
    parser.add_argument("--jobs", type=int, default=300_000, help="waiting jobs before a window")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="lower the console's CPU priority by this much while it polls (19: the database "
        "effect alone, when the console shares the workers' CPUs); with --http, the server's "
        "(manage.py serve --nice), for both windows",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="poll the production server (manage.py serve) over real HTTP instead of the "
        "console in this process",
    )
    parser.add_argument("--users", type=int, default=USERS, help="simulated users (%(default)s)")
    parser.add_argument("--poll-seconds", type=float, default=POLL_SECONDS)
    parser.add_argument(
        "--users-nice",
        type=int,
        default=0,
        help="nice value of the simulated users' threads (--http): the browsers they stand for "
        "run elsewhere; their CPU time is reported either way (users_cpu_seconds)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="with --http: alone/watched pairs, in ABBA order (%(default)s: 4 windows)",
    )
    parser.add_argument(
        "--warmup-windows",
        type=int,
        default=1,
        help="with --http: uncounted windows first (%(default)s)",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    node_queue.ensure_installed()
    conninfo = node_queue.prepare(args.server_url, args.database)
    if args.http:
        return main_http(args, conninfo)

    import run  # the same Django setup as the page benchmark, on this database

    run.configure_django(conninfo)
    run.logged_in_client()  # the console's tables and the bench user
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.get(username=run.BENCH_USER)
    clients = []
    for _ in range(USERS):
        clients.append(Client(raise_request_exception=False))
        clients[-1].force_login(user)
    results: dict = {
        "nice": args.nice,
        "users": USERS,
        "poll_seconds": POLL_SECONDS,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
    }
    with tempfile.TemporaryDirectory(prefix="gw-observer-") as workdir:
        for phase in ("alone", "with console"):
            node_queue.top_up(conninfo, args.jobs)
            workers = node_queue.start_workers(
                conninfo, args.processes, args.concurrency, Path(workdir)
            )
            stop, latencies, threads = threading.Event(), [], []
            try:
                time.sleep(5)  # the workers connect, install nothing, and reach full speed
                if phase == "with console":
                    if args.nice:
                        # The workers were started at normal priority; only this process (the
                        # console) yields the CPU: as if it had a machine of its own, so what
                        # is left is its load on the database.
                        os.nice(args.nice)
                    threads = polling_load(stop, clients, latencies)
                time.sleep(2)  # in both phases, as in _http_window (the drain slows as it goes)
                load_before = os.getloadavg()[0]
                rate = node_queue.throughput(conninfo, args.seconds)
                dry = node_queue.ran_dry(conninfo, args.processes * args.concurrency)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=30)
                node_queue.stop_workers(workers)
            entry = {
                "jobs_per_second": round(rate, 1),
                "load_average": round(load_before, 2),
                "ran_dry": dry,
            }
            if latencies:
                latencies.sort()
                entry |= {
                    "console_requests": len(latencies),
                    "console_median_ms": round(latencies[len(latencies) // 2], 1),
                    "console_p95_ms": round(latencies[int(len(latencies) * 0.95)], 1),
                }
            results[phase] = entry
            print(f"{phase}: {rate:,.0f} jobs/s {entry}", flush=True)
    refuse_dry([results["alone"], results["with console"]])
    return _finish(results, args.output)


def window_order(rounds: int) -> list[str]:
    """Alone and watched windows in ABBA order (alone, watched, watched, alone, ...): a drift
    over the run (a warming cache, a growing table, another job on the machine) weighs on both
    phases alike instead of on whichever comes second."""
    order: list[str] = []
    for i in range(rounds):
        pair = ["alone", "with console"]
        order += pair if i % 2 == 0 else pair[::-1]
    return order


def main_http(args: argparse.Namespace, conninfo: str) -> int:
    """Alone and watched windows (window_order), the console served by gunicorn and polled over
    HTTP; each phase's figures are its windows' totals."""
    results: dict = {
        "mode": "http",
        "nice": args.nice,
        "users": args.users,
        "poll_seconds": args.poll_seconds,
        "processes": args.processes,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "warmup_windows": args.warmup_windows,
        "users_nice": args.users_nice,
        "load_average_before": list(os.getloadavg()),
    }
    windows: list[dict] = []
    logs = {"alone": observer_http.PollLog(), "with console": observer_http.PollLog()}
    with (
        serve_bench.Server(conninfo, env={"SERVE_NICE": str(args.nice)}) as server,
        tempfile.TemporaryDirectory(prefix="gw-observer-") as workdir,
    ):
        sessions = observer_http.log_in_users(server, args.users)
        results["server"] = {"workers": server.workers, "threads": server.threads}
        for _ in range(args.warmup_windows):  # not counted: the first window runs fastest
            _http_window(args, conninfo, server, sessions, Path(workdir), "alone")
        for phase in window_order(args.rounds):
            window = _http_window(args, conninfo, server, sessions, Path(workdir), phase)
            logs[phase].answers += window.pop("answers")
            windows.append(window)
            print(f"{phase}: {window['jobs_per_second']:,.0f} jobs/s {window}", flush=True)
    results["windows"] = windows
    refuse_dry(windows)
    for phase in ("alone", "with console"):
        mine = [w for w in windows if w["phase"] == phase]
        seconds = sum(w["seconds"] for w in mine)
        cpu = sum(w["console_cpu_seconds"] for w in mine)
        entry = {
            "jobs_per_second": round(sum(w["jobs"] for w in mine) / seconds, 1),
            "load_average": round(statistics.mean(w["load_average"] for w in mine), 2),
            "console_cpu_seconds": round(cpu, 2),
            "users_cpu_seconds": round(sum(w.get("users_cpu_seconds", 0) for w in mine), 2),
        }
        if phase == "with console":
            entry |= {
                "polls": logs[phase].summary(seconds, args.users),
                "cpu_seconds_per_user_minute": round(cpu / args.users / (seconds / 60), 3),
            }
        results[phase] = entry
    return _finish(results, args.output)


def _http_window(args, conninfo, server, sessions, workdir: Path, phase: str) -> dict:
    """One measured window: fresh jobs, a vacuumed table, the workers at full speed, and in the
    watched phase every user polling."""
    node_queue.top_up(conninfo, args.jobs)
    workers = node_queue.start_workers(conninfo, args.processes, args.concurrency, workdir)
    stop, log, threads = threading.Event(), observer_http.PollLog(), []
    meter = observer_http.CpuMeter(server, conninfo)
    try:
        time.sleep(5)  # the workers connect and reach full speed
        if phase == "with console":
            threads = observer_http.start_polling(
                sessions, args.poll_seconds, stop, log, nice=args.users_nice
            )
        # Every user has polled once before the count starts; and the alone window waits just as
        # long. The drain slows as it goes (each completed job leaves a dead row and index entry
        # the next fetches step over; nothing vacuums during a window): measured 3,300 jobs/s in
        # its first 10 s and 2,300 by its fourth, so a window that started counting 6 s later
        # than the other would look ~8 % slower for that alone, which is what earlier runs
        # charged to the console.
        time.sleep(args.poll_seconds + 1)
        log.answers.clear()
        meter.start()
        client_before = time.process_time()  # this process: the simulated users' threads
        load_before = os.getloadavg()[0]
        before, started = node_queue.completed(conninfo), time.monotonic()
        time.sleep(args.seconds)
        done, seconds = node_queue.completed(conninfo) - before, time.monotonic() - started
        dry = node_queue.ran_dry(conninfo, args.processes * args.concurrency)
        cpu = meter.stop()
        client_cpu = time.process_time() - client_before
        answers = list(log.answers)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        node_queue.stop_workers(workers)
    return {
        "phase": phase,
        "jobs": done,
        "seconds": round(seconds, 2),
        "jobs_per_second": round(done / seconds, 1),
        "load_average": round(load_before, 2),
        "console_cpu_seconds": round(cpu, 2),
        "users_cpu_seconds": round(client_cpu, 2),
        "polls": len(answers),
        "ran_dry": dry,
        "answers": answers,
    }


def ratio_error(windows: list[dict], ratio: float) -> float | None:
    """The ratio's standard error from the windows' spread (delta method: the relative
    errors of the two means add in quadrature); None with fewer than two windows a phase.
    Windows vary by several per cent from identical starts, so a 2-window ratio is noise."""
    phases = [
        [w["jobs_per_second"] for w in windows if (w["phase"] == "alone") == alone]
        for alone in (True, False)
    ]
    if min(len(rates) for rates in phases) < 2 or not all(statistics.mean(r) for r in phases):
        return None
    relative = sum(
        (statistics.stdev(rates) / statistics.mean(rates)) ** 2 / len(rates) for rates in phases
    )
    return ratio * math.sqrt(relative)


def _finish(results: dict, output: Path | None) -> int:
    alone = max(results["alone"]["jobs_per_second"], 1)
    ratio = results["with console"]["jobs_per_second"] / alone
    results["ratio"] = round(ratio, 3)
    results["load_average_after"] = list(os.getloadavg())
    error = ratio_error(results.get("windows", []), ratio)
    spread = ""
    if error is not None:
        results["ratio_standard_error"] = round(error, 3)
        spread = f" ± {error:.1%} (standard error; ×2 for a 95 % interval)"
    print(
        f"throughput with the console polling: {ratio:.1%}{spread} of the throughput alone "
        "(target 95 %)"
    )
    watched = results["with console"]
    if "polls" in watched:
        polls = watched["polls"]
        print(
            f"{polls['requests']:,} polls served, median {polls.get('median_ms', 0):.0f} ms, "
            f"{polls.get('share_304', 0):.0%} answered 304; console CPU "
            f"{watched['cpu_seconds_per_user_minute']:.2f} s per watching user per minute; "
            f"the simulated users' own CPU: {watched.get('users_cpu_seconds', 0):.1f} s"
        )
    if output:
        output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
