"""The console under its production server, for the HTTP benchmarks.

    with serve_bench.Server(conninfo) as server:       # manage.py serve on a free port
        session = server.login()                       # an operator, over real HTTP
        session.get("/")

`manage.py serve` (gunicorn, gthread workers, dashboard/gunicorn_conf.py) runs as an operator
runs it, against the bench database, on 127.0.0.1 and a free port. Before it starts, the
console's tables are migrated there and two logins are made with `manage.py console_user` (an
operator and an admin, each with a generated password). Its database sessions carry their own
application_name, so that their PostgreSQL backends can be found (and their CPU counted).

`stats` overrides (the smoke test's small datasets use the large-table paths with a lower
EXACT_ROW_LIMIT; `--sample-reuse 0` makes every request read its own sample) are module
constants of worker_admin/stats.py, so the server is then started through this file
(`--child`), which sets them and calls the same `serve` command in-process: gunicorn's workers
are forked from it and inherit them.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from http_client import Session  # noqa: E402

OPERATOR, ADMIN = "bench", "bench_admin"
START_TIMEOUT = 120.0
# The same key as the in-process benchmark (run.configure_django): signed cursors that the
# in-process walk to a deep page produces are then valid on the server too.
SECRET_KEY = "bench-only-secret-key-not-for-production"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`manage.py serve` in a child process; a context manager that stops it (SIGTERM)."""

    def __init__(
        self,
        conninfo: str,
        *,
        workers: int = 2,
        threads: int = 4,
        schema: str = "graphile_worker",
        stats: dict[str, float] | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        application_name: str | None = None,
    ) -> None:
        """`env` adds to (or overrides) the server's environment, CONSOLE_DATABASE_URL
        included; the caller's own CONSOLE_DATABASE_URL, if any, is never inherited."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.application_name = application_name or f"gc-bench-http-{self.port}"
        self.conninfo = make_conninfo(conninfo, application_name=self.application_name)
        self.workers, self.threads = workers, threads
        self.stats = stats or {}
        self.log = log or Path(os.environ.get("TMPDIR", "/tmp")) / f"serve-bench-{self.port}.log"
        inherited = dict(os.environ)
        for name in ("CONSOLE_DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CONSOLE_DEMO"):
            inherited.pop(name, None)
        self.env = {
            **inherited,
            "DATABASE_URL": self.conninfo,
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "DEBUG": "0",
            "GRAPHILE_WORKER_SCHEMA": schema,
            **(env or {}),
        }
        self.passwords = {OPERATOR: secrets.token_urlsafe(18), ADMIN: secrets.token_urlsafe(18)}
        self.process: subprocess.Popen | None = None

    # -- start and stop --------------------------------------------------------------------

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self.manage("migrate", "--verbosity", "0")
        # "--password=…" in one argument: a generated password may start with "-".
        self.manage("console_user", OPERATOR, "--role", "operator", f"--password={self.password}")
        self.manage("console_user", ADMIN, "--role", "admin", f"--password={self.passwords[ADMIN]}")
        serve = ["serve", "--bind", f"127.0.0.1:{self.port}", "--no-collectstatic"]
        serve += ["--workers", str(self.workers), "--threads", str(self.threads)]
        if self.stats:
            command = [sys.executable, __file__, "--child", json.dumps(self.stats), *serve]
        else:
            command = [sys.executable, "manage.py", *serve]
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_until_serving()

    @property
    def password(self) -> str:
        return self.passwords[OPERATOR]

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        probe = Session(self.base_url)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if probe.get("/healthz").status_code == 200:
                    probe.close()
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"serve did not answer within {START_TIMEOUT:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # graceful: workers finish their requests
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- users and what they cost --------------------------------------------------------------

    def login(self, username: str = OPERATOR, session: Session | None = None) -> Session:
        """Log `session` (or a new one) in as `username` over HTTP."""
        session = session or Session(self.base_url)
        session.login(username, self.passwords[username])
        return session

    def pids(self) -> list[int]:
        """The gunicorn master (this child process) and its live workers."""
        if self.process is None:
            return []
        return [self.process.pid, *children(self.process.pid)]

    def cpu_seconds(self, backend_pids: list[int]) -> float:
        """CPU used so far by the server's processes (reaped workers included, through the
        master's cutime/cstime) and by the given PostgreSQL backends."""
        total = 0.0
        if self.process is not None:
            total += process_cpu(self.process.pid, with_children=True)
            total += sum(process_cpu(pid) for pid in children(self.process.pid))
        return total + sum(process_cpu(pid) for pid in backend_pids)


TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, *, with_children: bool = False) -> float:
    """utime + stime (and cutime + cstime: reaped children) from /proc/<pid>/stat, seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0  # gone: a recycled worker (its master counts it) or a closed backend
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, field 3 onwards
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    ticks = utime + stime + ((cutime + cstime) if with_children else 0)
    return ticks / TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _child(argv: list[str]) -> None:
    """Started by Server with --child JSON serve …: set the console's stats constants, then
    run `manage.py serve` in this process (gunicorn forks its workers from here)."""
    overrides, serve_args = json.loads(argv[0]), argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from worker_admin import stats

    for name, value in overrides.items():
        if not hasattr(stats, name):
            raise SystemExit(f"worker_admin.stats has no {name}")
        setattr(stats, name, value)
    call_command(*serve_args)


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _child(sys.argv[2:])
