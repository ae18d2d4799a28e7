"""Property-based: schemathesis generates requests for every operation and parameter of
/api/schema (valid and invalid: its coverage phase tries each boundary and each wrong type, its
fuzzing phase random values), sends them through the WSGI app and asserts that none is answered
with a 5xx. Reads go with a viewer's token, job writes with an operator's, maintenance with an
admin's: the role that gets furthest into each endpoint (a lesser role stops at 403).

Committed rows (transactional_db via `worker_rows`): a request that made the database refuse a
statement cannot poison the examples after it, as it would inside one rolled-back transaction.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from dashboard.wsgi import application
from tests.factories import JobFactory
from worker_admin.api import tokens
from worker_admin.api.main import api
from worker_admin.roles import ensure_groups
from worker_admin.utils import WorkerUtils


@pytest.fixture
def role_tokens(worker_rows) -> dict[str, str]:
    """A token per role, and a few jobs in every state for the reads and previews to find."""
    ensure_groups()
    secrets = {}
    for role in ("viewer", "operator", "admin"):
        user = get_user_model().objects.create_user(f"fuzz_{role}")
        user.groups.add(Group.objects.get(name=role))
        secrets[role] = tokens.issue(user, name="schemathesis", via="cli").secret
    jobs = JobFactory(WorkerUtils())
    jobs.ready("send_email", queue_name="mail", job_key="k1")
    jobs.scheduled("report")
    jobs.failed("charge", error="card 4242 declined")
    jobs.retrying("charge")
    jobs.locked(by="pool-abc123")
    return secrets


# Built when the module is collected, from the same NinjaAPI object /api/schema serves (that
# view wants a token, and no token exists before the database does). schemathesis's lazy loader
# (schemathesis.pytest.from_fixture) fails under pytest 9: it reads Node._nodeid.
schema = schemathesis.openapi.from_dict(
    json.loads(json.dumps(api.get_openapi_schema(path_prefix="/api/")))
)
schema.app = application


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,  # the database's speed is not what this test is about
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api__no_generated_request_gets_a_server_error(case, role_tokens):
    if case.method == "GET":
        role = "viewer"
    else:
        role = "admin" if case.path.startswith("/api/maintenance/") else "operator"
    response = case.call(headers={"Authorization": f"Bearer {role_tokens[role]}"})
    case.validate_response(response, checks=[not_a_server_error])
