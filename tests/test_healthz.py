"""/healthz: open, cheap, never cached; 503 naming what failed. Failures are real: a schema that
is not there, and a database connection aimed at a port nothing listens on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import URLPattern, reverse

from worker_admin import urls as worker_urls
from worker_admin.schema import clear_capabilities_cache
from worker_admin.utils import WorkerUtils


def closed_port() -> int:
    """A port on this machine that nothing listens on: bound, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Without DATABASE_REPLICA_URL (tests/test_replica.py starts a real replica).
NO_REPLICA = {"configured": False, "in_use": False, "lag_seconds": None, "error": None}

REQUESTS_SCRIPT = """
import json, sys
import django
django.setup()
from django.test import Client
client = Client()
answers = []
for method, path in json.loads(sys.argv[1]):
    response = getattr(client, method)(path)
    answers.append({"status": response.status_code, "body": response.content.decode(),
                    "content_type": response.get("Content-Type")})
print(json.dumps(answers))
"""


def console_process(requests: list[tuple[str, str]], database_url: str, **env: str) -> list[dict]:
    """Answer requests in a fresh console process with its own DATABASE_URL: its connection is
    real, and the test's own transaction and connection guards stay out of it."""
    root = Path(__file__).resolve().parent.parent
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "PYTHONPATH": str(root),
        **env,
    }
    environment.pop("TEST_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", REQUESTS_SCRIPT, json.dumps(requests)],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_healthz__ok_without_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "schema": "graphile_worker",
        "flavour": "rust-recovery",
        "replica": NO_REPLICA,
    }
    assert "no-store" in response["Cache-Control"] and "max-age=0" in response["Cache-Control"]


def test_healthz__head_and_methods(client, db):
    head = client.head("/healthz")
    assert head.status_code == 200 and head.content == b""
    assert client.post("/healthz").status_code == 405


def test_healthz__node_schema_is_healthy(client, db, settings):
    WorkerUtils(schema="gw_health_node").migrate(recovery=False)
    settings.GRAPHILE_WORKER_SCHEMA = "gw_health_node"
    clear_capabilities_cache()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["flavour"] == "node"


def test_healthz__schema_not_found(client, db, settings):
    settings.GRAPHILE_WORKER_SCHEMA = "no_such_worker_schema"
    clear_capabilities_cache()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "schema not found",
        "database": "ok",
        "schema": "no_such_worker_schema",
        "flavour": "absent",
        "replica": NO_REPLICA,
    }


@pytest.mark.embedded
def test_healthz__database_unreachable():
    port = closed_port()
    get, head = console_process(
        [("get", "/healthz"), ("head", "/healthz")],
        f"postgresql://postgres:not-a-secret@127.0.0.1:{port}/graphile_console_nowhere",
    )
    assert get["status"] == 503 and get["content_type"] == "application/json"
    assert json.loads(get["body"]) == {
        "status": "database unreachable",
        "database": "unreachable",
        "schema": "graphile_worker",
        "flavour": None,
        "replica": NO_REPLICA,
    }
    # Nothing about the connection leaks: no host, port, user, password or driver message.
    for secret in (str(port), "127.0.0.1", "postgres", "not-a-secret", "nowhere", "refused"):
        assert secret not in get["body"].lower()
    assert head == {"status": 503, "body": "", "content_type": "application/json"}


def _sample_path(pattern: URLPattern) -> str:
    kwargs = {name: 1 for name in pattern.pattern.converters}
    return reverse(f"worker_admin:{pattern.name}", kwargs=kwargs)


def test_login__only_the_monitoring_endpoints_are_open(client, db):
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200  # from 127.0.0.1, the test client's address
    paths = [_sample_path(p) for p in worker_urls.urlpatterns] + ["/django-admin/"]
    assert len(paths) > 15
    for path in paths:
        response = client.get(path)
        assert response.status_code == 302, path
        assert "login" in response["Location"], path


def test_healthz__body_is_small_json(client, db):
    body = client.get("/healthz").content
    assert len(body) < 200
    assert set(json.loads(body)) == {"status", "database", "schema", "flavour", "replica"}
