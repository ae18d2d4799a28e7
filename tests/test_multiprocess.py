"""Several console processes as one (#17 point 2): two production servers (`manage.py serve`,
one gunicorn worker each, so two Python processes with nothing in common but the database) on
two ports, and one browser session whose requests alternate between them, as a load balancer
without sticky sessions would send them. Every answer must be the one a single process gives:
the session, the CSRF token, a preview made on one process and confirmed on the other (once),
its undo, and the login throttle's count of wrong passwords."""

from __future__ import annotations

import http.cookiejar
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from itertools import cycle
from pathlib import Path

import pytest
from django.utils import timezone

from tests.dbconn import server_conninfo
from tests.faultdb import Response, free_port, hidden_field
from worker_admin.audit import AuditEntry
from worker_admin.models import Job
from worker_admin.roles import OPERATOR
from worker_admin.utils import JobSpec, WorkerUtils

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120
PASSWORD = "two-processes-123"


def serve(port: int, log: Path) -> subprocess.Popen:
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "DATABASE_URL": server_conninfo(),
        "SECRET_KEY": "multiprocess-test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    command = [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "1", "--threads", "2"]
    with open(log, "wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


class Balanced:
    """One browser (one cookie jar) whose requests go to the next server in turn. Cookies are
    per host, not per port, so both servers see the same session and CSRF cookies."""

    def __init__(self, ports: list[int]) -> None:
        self.bases = [f"http://127.0.0.1:{port}" for port in ports]
        self._next = cycle(self.bases)
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )
        self.served_by: list[str] = []

    def request(self, path: str, data: list | None = None, *, base: str | None = None):
        base = base or next(self._next)
        self.served_by.append(base)
        body, headers = None, {}
        if data is not None:
            token = next((c.value for c in self.cookies if c.name == "csrftoken"), "")
            body = urllib.parse.urlencode([("csrfmiddlewaretoken", token), *data]).encode()
            headers = {"Referer": base + path, "Origin": base}
        req = urllib.request.Request(base + path, data=body, headers=headers)
        try:
            with self.opener.open(req, timeout=60) as reply:
                return Response(reply.status, reply.read().decode(), dict(reply.headers))
        except urllib.error.HTTPError as reply:
            return Response(reply.code, reply.read().decode(errors="replace"), dict(reply.headers))

    def get(self, path: str, **kwargs) -> Response:
        return self.request(path, **kwargs)

    def post(self, path: str, data: list, **kwargs) -> Response:
        return self.request(path, data, **kwargs)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def two_servers(transactional_db, tmp_path):
    ports = [free_port(), free_port()]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = [serve(port, log) for port, log in zip(ports, logs, strict=True)]
    try:
        for port, process, log in zip(ports, processes, logs, strict=True):
            _wait_until_serving(port, process, log)
        yield ports
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for log in logs:
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text()


def _wait_until_serving(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.3)
    pytest.fail(f"serve never answered /healthz:\n{log.read_text()}")


@pytest.fixture
def rosa(transactional_db, django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("rosa", password=PASSWORD)
    user.groups.add(Group.objects.get(name=OPERATOR))
    return user


def _login(browser: Balanced, password: str = PASSWORD, *, base: str | None = None) -> Response:
    browser.get("/login/", base=base)  # the CSRF cookie
    return browser.post("/login/", [("username", "rosa"), ("password", password)], base=base)


def test_two_processes__one_session__preview_on_one_confirm_on_the_other_once_then_undo(
    two_servers, rosa
):
    utils = WorkerUtils()
    utils.migrate()
    later = timezone.now() + timedelta(hours=3)
    spec = JobSpec(run_at=later, priority=1)
    jobs = [utils.add_raw_job("mp_task", {"n": n}, spec) for n in range(3)]
    ids = [job.id for job in jobs]
    browser = Balanced(two_servers)
    a, b = browser.bases

    assert _login(browser, base=a).status == 302
    overview = browser.get("/", base=b)  # the session made on A is known to B
    assert overview.status == 200 and "rosa" in overview.text

    form = [("action", "reschedule"), ("scope", "ids"), ("has_options", "1"), ("priority", "7")]
    form += [("ids", str(i)) for i in ids]
    preview = browser.post("/jobs/actions/", form, base=a)
    assert preview.status == 200, preview.text[:2000]
    token = hidden_field(preview.text, "token")
    confirm = [*form, ("token", token), ("reason", "two processes")]

    done = browser.post("/jobs/actions/", confirm, base=b)
    assert done.status == 302, done.text[:2000]
    again = browser.post("/jobs/actions/", confirm, base=a)
    assert again.status == 400 and "already used" in again.text, again.text[:2000]
    assert sorted(Job.objects.filter(id__in=ids).values_list("priority", flat=True)) == [7, 7, 7]
    entries = AuditEntry.objects.filter(action="reschedule", outcome="done")
    assert entries.count() == 1 and sorted(entries.get().changed_ids) == sorted(ids)

    entry = entries.get()
    undo_preview = browser.post(f"/audit/{entry.pk}/undo/", [], base=b)
    assert undo_preview.status == 200, undo_preview.text[:2000]
    undo_token = hidden_field(undo_preview.text, "token")
    undone = browser.post(f"/audit/{entry.pk}/undo/", [("token", undo_token)], base=a)
    assert undone.status == 302, undone.text[:2000]
    twice = browser.post(f"/audit/{entry.pk}/undo/", [("token", undo_token)], base=b)
    assert twice.status == 400
    assert sorted(Job.objects.filter(id__in=ids).values_list("priority", flat=True)) == [1, 1, 1]
    assert AuditEntry.objects.filter(action="undo_reschedule", outcome="done").count() == 1

    logout = browser.post("/logout/", [], base=b)
    assert logout.status in (200, 302)
    assert browser.get("/", base=a).status == 302  # logged out everywhere, not only on B


def test_two_processes__wrong_passwords_sent_to_both_count_as_one_throttle(
    two_servers, rosa, settings
):
    browser = Balanced(two_servers)
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit):  # alternating: half on each process
        reply = _login(browser, "not-the-password")
        assert reply.status in (200, 429)
    for base in browser.bases:  # both refuse the right password now
        assert _login(browser, base=base).status == 429
    served = set(browser.served_by)
    assert served == set(browser.bases)
