"""Bad input through the JSON API's reads (/api/): every read endpoint's query parameters with
the same hostile values as the console's pages (tests/test_bad_input.py). No 5xx, nothing
written, and a refused value gets a JSON body whose `detail` says why in a sentence.
(Writes are driven by schemathesis in tests/test_api_schemathesis.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_bad_input import FEW, JOB_FILTERS, SCRIPT, hostile, seeded, unchanged  # noqa: F401
from worker_admin.api import tokens
from worker_admin.roles import ensure_groups

ENDPOINTS = {
    "/api/jobs": [*[f for f in JOB_FILTERS if f != "q"], "search", "limit", "payload"],
    "/api/stats": [],
    "/api/queues": ["name"],
    "/api/tasks": [],
    "/api/workers": ["threshold_minutes"],
    "/api/failures": ["task", "state", "limit"],
    "/api/audit": ["user", "action", "outcome", "via", "job", "after", "before", "before_id"],
}


@pytest.fixture
def api(client, django_user_model):
    from django.contrib.auth.models import Group

    ensure_groups()
    user = django_user_model.objects.create_user("script", password="pw-123456789")
    user.groups.add(Group.objects.get(name="admin"))
    secret = tokens.issue(user, name="bad input", via="cli").secret

    def get(path: str, params: dict):
        return client.get(path, params, HTTP_AUTHORIZATION=f"Bearer {secret}")

    return get


def _check(response) -> None:
    assert response.status_code < 500, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    if response.status_code >= 400:
        detail = response.json().get("detail")
        text = detail if isinstance(detail, str) else str(detail)
        assert len(text) > 10, f"no sentence in {response.json()}"
    # JSON is not HTML, but a hostile value must not come back as markup either way.
    assert response["Content-Type"] != "text/html"


@FEW
@given(
    endpoint=st.sampled_from(list(ENDPOINTS)),
    data=st.data(),
)
def test_api_reads__any_query_parameters(api, unchanged, endpoint, data):  # noqa: F811
    names = ENDPOINTS[endpoint] + ["junk"]
    params = data.draw(st.dictionaries(st.sampled_from(names), hostile, max_size=4))
    _check(api(endpoint, params))
    unchanged()


@FEW
@given(
    endpoint=st.sampled_from(["/api/jobs", "/api/failures", "/api/workers", "/api/audit"]),
    value=st.sampled_from(["abc", "-1", "0", "1e309", "9" * 40, SCRIPT, "\x00", "NaN"]),
)
def test_api_reads__bad_numbers_are_422_with_a_sentence(api, unchanged, endpoint, value):  # noqa: F811
    name = {
        "/api/jobs": "limit",
        "/api/failures": "limit",
        "/api/workers": "threshold_minutes",
        "/api/audit": "before_id",
    }[endpoint]
    response = api(endpoint, {name: value})
    assert response.status_code in (400, 422)
    _check(response)
    unchanged()


@FEW
@given(job_id=st.one_of(st.integers(), st.sampled_from(["9" * 30, "abc", "%00", "-1"])))
def test_api_reads__any_job_id(api, unchanged, job_id):  # noqa: F811
    response = api(f"/api/jobs/{job_id}", {})
    assert response.status_code in (200, 400, 404, 422)
    if response.status_code != 404 or response["Content-Type"].startswith("application/json"):
        _check(response)
    unchanged()
