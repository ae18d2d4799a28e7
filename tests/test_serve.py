"""`python3 manage.py serve`, the production server, as an operator runs it: a real gunicorn on a
free port against the test database, a login over real HTTP, and a graceful stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tests.dbconn import server_conninfo
from tests.faultdb import Browser, free_port, hidden_field
from worker_admin.roles import OPERATOR

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parent.parent
APPLICATION_NAME = "graphile-console"  # the default, which serve must not change
START_TIMEOUT = 120


@pytest.fixture
def rosa(transactional_db, django_user_model, settings):
    # The server checks passwords with the production hasher, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("rosa", password="pw-123456789")
    user.groups.add(Group.objects.get(name=OPERATOR))
    return user


def serve(port: int, log: Path) -> subprocess.Popen:
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "DATABASE_URL": server_conninfo(),
        "SECRET_KEY": "serve-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SERVE_NICE": "5",
    }
    command = [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "2", "--threads", "2"]
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_until_serving(browser: Browser, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if browser.get("/healthz").status == 200:
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"serve never answered /healthz:\n{log.read_text()}")


def test_serve__login_over_http_overview_healthz_static_then_a_graceful_stop(rosa, tmp_path):
    port, log = free_port(), tmp_path / "serve.log"
    process = serve(port, log)
    browser = Browser(f"http://127.0.0.1:{port}")
    try:
        wait_until_serving(browser, process, log)
        health = browser.get("/healthz")
        assert health.status == 200 and '"status": "ok"' in health.text

        login_page = browser.get("/login/")
        assert login_page.status == 200
        token = hidden_field(login_page.text, "csrfmiddlewaretoken")
        signed_in = browser.request(
            "/login/",
            {"csrfmiddlewaretoken": token, "username": "rosa", "password": "pw-123456789"},
        )
        assert signed_in.status == 302, signed_in.text[:500]
        assert signed_in.headers["Location"] == "/"
        overview = browser.get("/")
        assert overview.status == 200
        assert "rosa" in overview.text and "Overview" in overview.text

        # Static files come from the same processes, through whitenoise, after collectstatic.
        stylesheet = next(
            line.split('href="')[1].split('"')[0]
            for line in overview.text.splitlines()
            if 'rel="stylesheet"' in line
        )
        static = browser.get(stylesheet)
        assert static.status == 200 and "max-age" in static.headers.get("Cache-Control", "")

        # Its sessions keep the console's name in pg_stat_activity.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = %s AND pid <> pg_backend_pid()",
                [APPLICATION_NAME],
            )
            assert cursor.fetchone()[0] >= 1

        # SERVE_NICE: the master and the workers it forked run at the lower priority.
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert children
        for pid in [process.pid, *map(int, children)]:
            assert os.getpriority(os.PRIO_PROCESS, pid) == 5

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert "Traceback" not in output, output
    assert "Handling signal: term" in output and "Shutting down: Master" in output


def test_serve__refuses_to_start_without_a_secret_key(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "DATABASE_URL": "host=/nowhere dbname=x"}
    done = subprocess.run(
        [sys.executable, "manage.py", "serve"],
        cwd=ROOT,
        env={**env, "DEBUG": "1"},  # settings accept a missing key in DEBUG; serve does not
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("CommandError: serve needs SECRET_KEY: set it to a long random")


@pytest.mark.parametrize(
    ("given", "says"), [("25", "--nice must be"), ("soon", "SERVE_NICE must be")]
)
def test_serve__refuses_a_bad_nice_value(given, says):
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "DATABASE_URL": "host=/nowhere dbname=x"}
    env["SECRET_KEY"] = "serve-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
    args = ["--nice", given] if given.isdigit() else []
    done = subprocess.run(
        [sys.executable, "manage.py", "serve", *args],
        cwd=ROOT,
        env={**env, "SERVE_NICE": given},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"CommandError: {says} a whole number from 0 to 19"), done.stderr
