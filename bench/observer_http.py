"""The observer effect over HTTP: simulated users polling the production server.

Used by `bench/observer.py --http`. Each user is one browser tab with its own login and its
own keep-alive connection (bench/http_client.py). Every POLL_SECONDS it sends what htmx sends
for the overview's and the jobs page's live parts (`HX-Request: true`, the target's id) and,
like the browser's HTTP cache under `Cache-Control: private, no-cache`, sends back the last
ETag of each URL in `If-None-Match`: the server answers 304 when nothing it shows changed.

What the console costs is the CPU time of its gunicorn processes (master, live workers and,
through the master's cutime/cstime, workers recycled meanwhile) and of their PostgreSQL
backends (found by the server's application_name), from /proc/<pid>/stat over the window,
per watching user and minute. A backend that closes during the window loses its last share
(CONN_MAX_AGE is 60 s, longer than the default window; the figure may run slightly low).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field

import psycopg
import serve_bench
from http_client import Session

POLLS = (
    # (path, the htmx target the browser names): the overview's body and the jobs list's results
    ("/", "overview-body"),
    ("/jobs/", "job-results"),
)


@dataclass
class PollLog:
    """Every poll answer, from all users: (path, status, milliseconds)."""

    answers: list[tuple[str, int, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, status: int, ms: float) -> None:
        with self.lock:
            self.answers.append((path, status, ms))

    def summary(self, seconds: float, users: int) -> dict:
        answers = list(self.answers)
        by_path = {}
        for path, _ in POLLS:
            mine = [a for a in answers if a[0] == path]
            by_path[path] = _summary(mine)
        return {
            **_summary(answers),
            "requests_per_second": round(len(answers) / max(seconds, 1e-9), 1),
            "users": users,
            "by_path": by_path,
            "errors": self.errors[:10],
        }


def _summary(answers: list[tuple[str, int, float]]) -> dict:
    if not answers:
        return {"requests": 0}
    times = sorted(a[2] for a in answers)
    statuses: dict[str, int] = {}
    for _, status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "requests": len(answers),
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
        "share_304": round(statuses.get("304", 0) / len(answers), 3),
        "statuses": statuses,
    }


def log_in_users(server: serve_bench.Server, users: int) -> list[Session]:
    return [server.login() for _ in range(users)]


def start_polling(
    sessions: list[Session],
    poll_seconds: float,
    stop: threading.Event,
    log: PollLog,
    nice: int = 0,
) -> list[threading.Thread]:
    """One thread per user, their first polls spread over one interval (tabs opened apart).
    `nice` lowers the users' threads' priority (Linux: per thread): the browsers they stand
    for run on the users' machines, not on the 2 CPUs the workers and the console share."""

    def user(session: Session, offset: float) -> None:
        if nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        etags: dict[str, str] = {}
        stop.wait(offset)
        while not stop.is_set():
            started = time.monotonic()
            for path, target in POLLS:
                headers = {"HX-Request": "true", "HX-Target": target, "HX-Trigger": target}
                if path in etags:
                    headers["If-None-Match"] = etags[path]
                try:
                    reply = session.get(path, headers=headers)
                except OSError as exc:
                    log.errors.append(f"{path}: {exc}")
                    continue
                if reply.headers.get("ETag"):
                    etags[path] = reply.headers["ETag"]
                log.add(path, reply.status_code, reply.elapsed_ms)
            stop.wait(max(0.0, poll_seconds - (time.monotonic() - started)))
        session.close()

    threads = [
        threading.Thread(target=user, args=(s, i * poll_seconds / len(sessions)), daemon=True)
        for i, s in enumerate(sessions)
    ]
    for thread in threads:
        thread.start()
    return threads


class CpuMeter:
    """CPU seconds of the server's processes and PostgreSQL backends between start and stop."""

    def __init__(self, server: serve_bench.Server, conninfo: str) -> None:
        self.server, self.conninfo = server, conninfo
        self.before: dict[int, float] = {}

    def _backends(self) -> list[int]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            rows = conn.execute(
                "select pid from pg_stat_activity where application_name = %s",
                [self.server.application_name],
            ).fetchall()
        return [pid for (pid,) in rows]

    def _read(self) -> dict[int, float]:
        master = self.server.process.pid
        found = {master: serve_bench.process_cpu(master, with_children=True)}
        for pid in serve_bench.children(master) + self._backends():
            found[pid] = serve_bench.process_cpu(pid)
        return found

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> float:
        after = self._read()
        return sum(max(0.0, cpu - self.before.get(pid, 0.0)) for pid, cpu in after.items())
