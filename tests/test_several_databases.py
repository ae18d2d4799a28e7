"""Several Graphile Worker databases in one console (#17 point 3), with real PostgreSQL
databases and a real production server: GRAPHILE_WORKER_DATABASES names a second database
(a scratch database on the test server, with its own worker schema and jobs), the pages under
/db/<name>/ read and write only it and link within it, a preview never acts on another
database, max_role and groups limit who does what where, the audit log and /metrics name the
database, and the command line and the JSON API take it too."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from psycopg import sql

from dashboard.worker_databases import parse
from tests.dbconn import scratch_name, server_conninfo
from tests.faultdb import free_port, hidden_field
from tests.test_multiprocess import Balanced, _wait_until_serving
from worker_admin.audit import AuditEntry
from worker_admin.installer import migrate
from worker_admin.models import Job
from worker_admin.roles import OPERATOR
from worker_admin.utils import JobSpec, WorkerUtils

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "several-databases-123"
SECRET = "several-databases-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


# -- the setting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{bad", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"Billing": "host=x"}', "not a usable database name"),
        ('{"main": "host=x"}', "already the name of DATABASE_URL's database"),
        ('{"b": {"max_role": "viewer"}}', "needs a 'url'"),
        ('{"b": {"url": "host=x", "max_role": "root"}}', "'max_role' must be one of"),
        ('{"b": {"url": "host=x", "groups": "oncall"}}', "'groups' must be a list"),
        ('{"b": {"url": "host=x", "schema": "other"}}', "must use the schema"),
        ('{"b": {"url": "host=x", "colour": "red"}}', "unknown keys ['colour']"),
        ('{"b": 3}', "must be a URL or an object"),
    ],
)
def test_setting__each_mistake_is_one_sentence_naming_the_entry(text, says):
    with pytest.raises(ImproperlyConfigured, match=re.escape(says)):
        parse(text, main="main", default_schema="graphile_worker")


def test_setting__urls_and_objects_in_the_order_given():
    entries = parse(
        '{"b": "host=b", "a": {"url": "host=a", "max_role": "viewer", "groups": ["g"]}}',
        main="main",
        default_schema="graphile_worker",
    )
    assert [(e.name, e.url, e.max_role, e.groups) for e in entries] == [
        ("b", "host=b", "admin", ()),
        ("a", "host=a", "viewer", ("g",)),
    ]
    assert parse("  ", main="main", default_schema="graphile_worker") == []


# -- a console over two real databases -------------------------------------------------------


@pytest.fixture
def second_database(transactional_db) -> Iterator[str]:
    """A scratch database with its own worker schema and three jobs of task `second_task`."""
    name = scratch_name("gc_second")
    with psycopg.connect(server_conninfo(dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = server_conninfo(dbname=name)
    try:
        with psycopg.connect(conninfo) as conn, conn.cursor() as cursor:
            migrate(cursor, "graphile_worker")
            for n in range(3):
                cursor.execute(
                    "select graphile_worker.add_job('second_task', json_build_object('n', %s::int),"
                    " run_at => now() + interval '3 hours', priority => 1)",
                    [n],
                )
        yield conninfo
    finally:
        with psycopg.connect(server_conninfo(dbname="postgres"), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def second_jobs(conninfo: str) -> dict[int, int]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("select id, priority from graphile_worker._private_jobs").fetchall()
    return dict(rows)


def _environment(second: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "DATABASE_URL": server_conninfo(),
        "SECRET_KEY": SECRET,
        "ALLOWED_HOSTS": "127.0.0.1",
        "GRAPHILE_WORKER_DATABASES": json.dumps(
            {
                "second": second,
                "readonly": {"url": second, "max_role": "viewer"},
                "team": {"url": second, "groups": ["team-x"]},
            }
        ),
    }


@pytest.fixture
def console(second_database, worker_rows, tmp_path) -> Iterator[str]:
    port, log = free_port(), tmp_path / "serve.log"
    command = [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "1", "--threads", "2"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=_environment(second_database), stdout=out, stderr=out
        )
    try:
        _wait_until_serving(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()


@pytest.fixture
def rosa(transactional_db, django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("rosa", password=PASSWORD)
    user.groups.add(Group.objects.get(name=OPERATOR))
    return user


def _browser(base: str, username: str = "rosa") -> Balanced:
    browser = Balanced([int(base.rsplit(":", 1)[1])])
    browser.get("/login/")
    assert browser.post("/login/", [("username", username), ("password", PASSWORD)]).status == 302
    return browser


def _main_jobs(n: int = 2) -> list[int]:
    spec = JobSpec(run_at=timezone.now() + timedelta(hours=3), priority=1)
    return [WorkerUtils().add_raw_job("main_task", {"n": i}, spec).id for i in range(n)]


def _nav_links(html: str) -> list[str]:
    nav = re.search(r'<nav class="mainnav".*?</nav>', html, re.S).group(0)
    return re.findall(r'href="([^"]+)"', nav)


def test_each_database_page_reads_only_its_own_jobs_and_links_within_it(console, rosa):
    _main_jobs()
    browser = _browser(console)

    second = browser.get("/db/second/jobs/")
    assert second.status == 200
    assert "second_task" in second.text and "main_task" not in second.text
    assert all(link.startswith("/db/second/") for link in _nav_links(second.text))

    main = browser.get("/jobs/")
    assert main.status == 200
    assert "main_task" in main.text and "second_task" not in main.text
    # With several databases even the main one's links carry its name.
    assert all(link.startswith("/db/main/") for link in _nav_links(main.text))
    assert browser.get("/db/main/jobs/").text.count("main_task") >= 1

    unknown = browser.get("/db/nope/jobs/")
    assert unknown.status == 404
    assert "There is no worker database called &#x27;nope&#x27;" in unknown.text

    overview = browser.get("/")
    rows = re.search(r'<section class="databases".*?</section>', overview.text, re.S).group(0)
    assert re.findall(r">(?:main|second|readonly)<", rows) == [">main<", ">second<", ">readonly<"]
    assert ">team<" not in rows  # rosa is not in team-x


def test_a_preview_made_on_one_database_never_acts_on_another(console, rosa, second_database):
    main_ids = _main_jobs(3)
    before = second_jobs(second_database)
    browser = _browser(console)
    form = [("action", "reschedule"), ("scope", "ids"), ("has_options", "1"), ("priority", "7")]
    form += [("ids", str(i)) for i in sorted(before)]

    preview = browser.post("/db/second/jobs/actions/", form)
    assert preview.status == 200, preview.text[:2000]
    confirm = [*form, ("token", hidden_field(preview.text, "token")), ("reason", "two dbs")]

    elsewhere = browser.post("/jobs/actions/", confirm)  # the main database's page
    assert elsewhere.status == 400
    assert "made on the worker database &#x27;second&#x27;" in elsewhere.text
    assert second_jobs(second_database) == before
    assert set(Job.objects.filter(id__in=main_ids).values_list("priority", flat=True)) == {1}

    done = browser.post("/db/second/jobs/actions/", confirm)
    assert done.status == 302, done.text[:2000]
    assert done.headers["Location"].startswith("/db/second/")
    assert set(second_jobs(second_database).values()) == {7}
    assert set(Job.objects.filter(id__in=main_ids).values_list("priority", flat=True)) == {1}
    entry = AuditEntry.objects.get(action="reschedule", outcome="done")
    assert entry.worker_database == "second"
    assert sorted(entry.changed_ids) == sorted(before)


def test_failures_are_grouped_and_shared_per_database(console, rosa, second_database):
    # The production server shares each grouping for SHARED_SNAPSHOT_SECONDS (the refresh
    # interval by default): asked one after the other within that time, each database still
    # shows only its own.
    main_ids = _main_jobs(2)
    failed = "UPDATE graphile_worker._private_jobs SET attempts = max_attempts, last_error = %s"
    with psycopg.connect(server_conninfo()) as conn:
        conn.execute(failed + " WHERE id = ANY(%s)", ["main boom 17", main_ids])
    with psycopg.connect(second_database) as conn:
        conn.execute(failed, ["second boom 42"])
    browser = _browser(console)
    for _ in range(2):
        second = browser.get("/db/second/failures/").text
        main = browser.get("/db/main/failures/").text
        assert "second boom &lt;n&gt;" in second and "main boom" not in second
        assert "main boom &lt;n&gt;" in main and "second boom" not in main
        assert "second boom &lt;n&gt;" in browser.get("/db/readonly/failures/").text


def test_max_role_and_groups_limit_what_is_done_where(
    console, rosa, django_user_model, second_database
):
    ids = sorted(second_jobs(second_database))
    browser = _browser(console)
    form = [("action", "run_now"), ("scope", "ids")] + [("ids", str(i)) for i in ids]

    refused = browser.post("/db/readonly/jobs/actions/", form)
    assert refused.status == 403
    assert "allows at most the viewer role" in refused.text
    assert browser.post("/db/second/jobs/actions/", form).status == 200  # a preview

    team = browser.get("/db/team/jobs/")
    assert team.status == 403 and "team-x" in team.text
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    assert _browser(console, "root").get("/db/team/jobs/").status == 200


def test_metrics_label_every_database(console):
    _main_jobs(2)
    reply = Balanced([int(console.rsplit(":", 1)[1])]).get("/metrics")
    assert reply.status == 200
    ready = dict(
        re.findall(r'graphile_worker_jobs\{database="(\w+)",state="scheduled"\} (\S+)', reply.text)
    )
    assert ready == {"main": "2.0", "second": "3.0", "readonly": "3.0", "team": "3.0"}


def test_command_line_takes_the_database(second_database, worker_rows):
    _main_jobs(1)
    env = _environment(second_database)

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "manage.py", "graphile_worker", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)

    listed = run("--database", "second", "--json", "list")
    assert listed.returncode == 0, listed.stderr
    assert {job["task_identifier"] for job in json.loads(listed.stdout)["jobs"]} == {"second_task"}
    main = run("--json", "list")
    assert {job["task_identifier"] for job in json.loads(main.stdout)["jobs"]} == {"main_task"}
    unknown = run("--database", "nope", "list")
    assert unknown.returncode == 2
    assert "There is no worker database called 'nope'; known: main, second" in unknown.stderr


def test_json_api_takes_the_database_from_the_url_and_checks_its_groups(
    console, django_user_model, second_database
):
    from django.contrib.auth.models import Group

    from worker_admin.api import tokens

    user = django_user_model.objects.create_user("script", password=PASSWORD)
    user.groups.add(Group.objects.get(name=OPERATOR))
    secret = tokens.issue(user, name="script", via="cli").secret
    _main_jobs(1)
    api = Balanced([int(console.rsplit(":", 1)[1])])

    def get(path: str):
        request = urllib.request.Request(
            api.bases[0] + path, headers={"Authorization": f"Bearer {secret}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as reply:
            return reply.code, json.loads(reply.read())

    status, body = get("/db/second/api/jobs")
    assert status == 200
    assert {job["task_identifier"] for job in body["jobs"]} == {"second_task"}
    status, body = get("/api/jobs")
    assert {job["task_identifier"] for job in body["jobs"]} == {"main_task"}
    status, body = get("/db/team/api/jobs")
    assert status == 403 and "team-x" in body["detail"]


def test_each_database_records_its_own_history(second_database, worker_rows):
    from worker_admin.history.models import HistorySnapshot

    _main_jobs(1)
    env = _environment(second_database)
    for args in (["--database", "second"], []):
        command = [sys.executable, "manage.py", "graphile_worker", *args, "record-history"]
        done = subprocess.run(
            [*command, "--once"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    second = HistorySnapshot.objects.get(schema="graphile_worker@second")
    main = HistorySnapshot.objects.get(schema="graphile_worker")
    assert sum(second.counts.get(s, 0) for s in ("ready", "scheduled")) == 3
    assert sum(main.counts.get(s, 0) for s in ("ready", "scheduled")) == 1
