"""A console connected as a role that row-level security hides every job from says so on every
page, in one sentence, instead of showing an empty, healthy-looking queue.

Unlike the SET ROLE tests in test_schema.py, this one connects the console itself as a real
login role (a separate process with its own DATABASE_URL), as an operator would configure it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.dbconn import scratch_name, server_conninfo
from tests.test_deploy_check import ROOT

# Builds its own connection strings: CI runs it on the embedded PostgreSQL too.
pytestmark = pytest.mark.embedded

# Roles belong to the whole server: one name per process, so parallel runs never share it.
ROLE = scratch_name("gw_console_rls_login")
PAGES = ["/", "/jobs/", "/jobs/?state=failed", "/failures/", "/queues/", "/tasks/", "/workers/"]

SCRIPT = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
client = Client()
client.force_login(get_user_model().objects.get(username="rita"))
out = {}
for url in %(pages)r:
    response = client.get(url)
    out[url] = [response.status_code, response.content.decode()]
print(json.dumps(out))
"""


@pytest.fixture
def rls_login_role(worker_rows, worker_schema, settings):
    console_schema = settings.CONSOLE_SCHEMA
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {ROLE}" if _exists(cursor) else "SELECT 1")
        cursor.execute(f"DROP ROLE IF EXISTS {ROLE}")
        cursor.execute(f"CREATE ROLE {ROLE} LOGIN NOBYPASSRLS NOSUPERUSER")
        cursor.execute(f"GRANT USAGE ON SCHEMA {worker_schema} TO {ROLE}")
        cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {worker_schema} TO {ROLE}")
        # The console's own tables (sessions, users, audit) stay usable: only jobs are hidden.
        cursor.execute(f"GRANT USAGE ON SCHEMA {console_schema} TO {ROLE}")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA {console_schema} TO {ROLE}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA {console_schema} TO {ROLE}")
        cursor.execute(
            "SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass(%s)",
            [f"{worker_schema}._private_jobs"],
        )
        assert cursor.fetchone()[0], "the worker schema enables row-level security on jobs"
    yield server_conninfo(user=ROLE, password=None)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [ROLE]
        )
        cursor.execute(f"DROP OWNED BY {ROLE}")
        cursor.execute(f"DROP ROLE {ROLE}")


def _exists(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE])
    return cursor.fetchone() is not None


def test_rls__a_console_connected_as_a_hidden_role_explains_every_page(
    rls_login_role, jobs, django_user_model
):
    jobs.failed("send_email", queue_name="emails")
    jobs.ready("report")
    django_user_model.objects.create_user("rita", password="pw-123456789")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": rls_login_role,
        "TEST_DATABASE_URL": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT % {"pages": PAGES}],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pages = json.loads(result.stdout.strip().splitlines()[-1])
    for url, (status, body) in pages.items():
        assert status == 200, url
        assert f"Connected role &quot;{ROLE}&quot; cannot read" in body, url
        assert "row-level security" in body, url
        assert "No jobs at all" not in body, url  # not an empty, healthy-looking queue
        assert "Nothing has used up its attempts" not in body, url
