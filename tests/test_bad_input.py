"""Bad input everywhere: hypothesis drives every page's query parameters and every form with
hostile values through Django's test client, as a logged-in admin (who may do everything).

Each example asserts the house rule: no 5xx (the test client re-raises any exception a view
lets through), nothing written (the worker tables hash the same and no audit entry says
"done"), and a clear sentence on the page when the value was refused. A hostile value never
comes back unescaped. The example counts are kept small so the suite stays quick in CI; the
hostile values come from a fixed list of known troublemakers mixed with generated text.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.factories import WORKER_DATA_TABLES
from worker_admin.audit import AuditEntry
from worker_admin.filters import PAGE_SIZES, SORTS, STATE_TABS
from worker_admin.installer import quote_schema

# BAD_INPUT_EXAMPLES=500 digs deeper locally; CI runs the same examples every time (derandomize)
# so a red build always points at a reproducible value.
FEW = settings(
    max_examples=int(os.environ.get("BAD_INPUT_EXAMPLES", "20")),
    derandomize=bool(os.environ.get("CI")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

SCRIPT = "<script>window.__pwned=1</script>"
# Values that have broken web forms before: markup, SQL, encodings, numbers at and past every
# limit, dates nobody means, JSON that is almost right, and sizes far past any field's limit.
TROUBLEMAKERS = [
    "",
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "\x1b[31mred",
    "\x7f\x08\x0c",
    "\u202egnp.exe",
    "\u200b\ufeff",
    "مرحبا بالعالم",
    "שלום",
    "𝕳𝖊𝖑𝖑𝖔 🔥",
    "\ufffd\ufffd",
    "Ã©Ã¨",
    SCRIPT,
    '"><img src=x onerror="window.__pwned=1">',
    "javascript:window.__pwned=1",
    "{{ request }}{% debug %}",
    "'; DROP TABLE graphile_worker._private_jobs; --",
    "1 OR 1=1",
    "' OR ''='",
    "%",
    "_",
    "\\",
    "-1",
    "0",
    "-32769",
    "32768",
    "2147483648",
    "9223372036854775808",
    "99999999999999999999999999",
    "1e309",
    "NaN",
    "-0",
    "1.5",
    "0x10",
    "null",
    "true",
    "[]",
    "{}",
    '{"a":',
    "[1,2",
    "0001-01-01T00:00",
    "0000-00-00",
    "9999-12-31T23:59:59",
    "275760-09-13",
    "1969-12-31",
    "2030-02-30T25:61",
    "x" * 10_000,
    "9" * 5_000,
    "é" * 3_000,
]

hostile = st.one_of(
    st.sampled_from(TROUBLEMAKERS),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=120),
    st.integers().map(str),
)
# Values a typed parameter never accepts (not a number, a date or a listed choice).
not_a_number = st.sampled_from(
    ["abc", "1.5", "1e309", "NaN", "0x10", SCRIPT, "9" * 5_000, "\x00", "--1", "١٢٣٤٥٦٧٨٩٠" * 3]
)
out_of_smallint = st.one_of(st.integers(max_value=-32_769), st.integers(min_value=32_768)).map(str)
not_a_date = st.sampled_from(
    ["yesterday", "2030-02-30", "0000-00-00", "2024-13-01", "31/12/2024 25:00", SCRIPT, "\x00"]
)


@pytest.fixture
def admin(login_as):
    return login_as("admin", "ada")


@pytest.fixture
def seeded(jobs, worker_schema):
    """A few jobs in every state, a registered worker holding one, and a failed one."""
    jobs.ready("send_email", queue_name="emails", job_key="welcome:1")
    jobs.scheduled("charge_card")
    jobs.failed("send_email", error="SMTP 550 <b>rejected</b>")
    jobs.retrying("resize_image")
    jobs.locked(by="graphile_worker_live", age="2 minutes")
    jobs.sql(f"SELECT {quote_schema(worker_schema)}.worker_heartbeat('graphile_worker_live')")
    return jobs


def _state(schema: str) -> tuple:
    """A fingerprint of every worker table's rows and of the audit log's done entries."""
    q = quote_schema(schema)
    hashes = []
    with connections[django_settings.WORKER_DATABASE].cursor() as cursor:
        for table in WORKER_DATA_TABLES:
            cursor.execute(
                f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM {q}.{table} t"
            )
            hashes.append(cursor.fetchone()[0])
    return (*hashes, AuditEntry.objects.filter(outcome=AuditEntry.Outcome.DONE).count())


@pytest.fixture
def unchanged(seeded, worker_schema):
    """Call it after a request: fails when anything was written since the fixture ran."""
    before = _state(worker_schema)

    def check() -> None:
        assert _state(worker_schema) == before, "a request with bad input wrote something"

    return check


def _text(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8")
    return response.content.decode("utf-8")


def _inert(body: str, *values: object) -> None:
    """No hostile value comes back as live markup."""
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            text = str(item)
            if "<" in text and len(text) > 3:
                assert text not in body, f"{text[:60]!r} was rendered unescaped"
    assert "<script>window.__pwned" not in body
    assert 'onerror="window.__pwned' not in body


def _sentence(body: str, *phrases: str) -> None:
    assert any(p in body for p in phrases), f"none of {phrases} on the page"


def _ok(response) -> str:
    assert response.status_code < 500
    return _text(response)


# -- GET pages ----------------------------------------------------------------------------------

JOB_FILTERS = [
    "state",
    "task",
    "queue",
    "key",
    "locked_by",
    "priority_min",
    "priority_max",
    "created_after",
    "created_before",
    "run_after",
    "run_before",
    "has_error",
    "q",
    "error",
    "failing",
    "sort",
    "size",
    "cursor",
]


@FEW
@given(params=st.dictionaries(st.sampled_from([*JOB_FILTERS, "junk"]), hostile, max_size=6))
def test_jobs_list__any_query_parameters(admin, unchanged, params):
    for htmx in (False, True):
        headers = {"HTTP_HX_Request": "true"} if htmx else {}
        body = _ok(admin.get("/jobs/", params, **headers))
        assert admin.get("/jobs/", params, **headers).status_code == 200
        _inert(body, *params.values())
    unchanged()


@FEW
@given(
    name=st.sampled_from(["priority_min", "priority_max"]),
    value=st.one_of(not_a_number, out_of_smallint),
)
def test_jobs_list__bad_priority_is_ignored_with_a_sentence(admin, unchanged, name, value):
    body = _ok(admin.get("/jobs/", {name: value, "task": "send_email"}))
    _sentence(body, "Ignored the priority")
    assert "send_email" in body  # the other filters still apply
    unchanged()


@FEW
@given(
    name=st.sampled_from(["created_after", "created_before", "run_after", "run_before"]),
    value=not_a_date,
)
def test_jobs_list__bad_dates_are_ignored_with_a_sentence(admin, unchanged, name, value):
    body = _ok(admin.get("/jobs/", {name: value}))
    _sentence(body, f"Ignored the {name.replace('_', ' ')} filter")
    unchanged()


@FEW
@given(
    name=st.sampled_from(["state", "sort", "size", "has_error"]),
    value=hostile.filter(
        lambda v: v.strip() not in {"", *STATE_TABS, *SORTS, *map(str, PAGE_SIZES), "yes", "no"}
    ),
)
def test_jobs_list__unknown_choices_are_ignored_with_a_sentence(admin, unchanged, name, value):
    body = _ok(admin.get("/jobs/", {name: value}))
    _sentence(body, "Ignored the")
    _inert(body, value)
    unchanged()


@FEW
@given(cursor=hostile.filter(lambda v: v.strip() != ""), sort=st.sampled_from([*SORTS, ""]))
def test_jobs_list__edited_cursor_shows_the_first_page(admin, unchanged, cursor, sort):
    body = _ok(admin.get("/jobs/", {"cursor": cursor, "sort": sort}))
    _sentence(body, "That page link")
    unchanged()


def test_jobs_list__cursor_for_another_sort_is_refused(admin, seeded, unchanged):
    for n in range(30):
        seeded.ready("filler", payload={"n": n})
    before = _state(django_settings.GRAPHILE_WORKER_SCHEMA)
    first = _ok(admin.get("/jobs/", {"sort": "oldest", "size": "25"}))
    cursor = re.search(r'href="\?[^"]*cursor=([^&"]+)', first).group(1)
    body = _ok(admin.get(f"/jobs/?sort=newest&size=25&cursor={cursor}"))
    _sentence(body, "another sort order")
    assert _state(django_settings.GRAPHILE_WORKER_SCHEMA) == before


@FEW
@given(job_id=st.one_of(st.integers(min_value=0), st.sampled_from(["9" * 30, "0", "00000001"])))
def test_job_detail__any_id(admin, unchanged, job_id):
    response = admin.get(f"/jobs/{job_id}/")
    assert response.status_code in (200, 404)
    if response.status_code == 404:
        _sentence(_text(response), "There is no job", "not found", "Not found")
    unchanged()


@FEW
@given(path=st.sampled_from(["/jobs/-1/", "/jobs/1e3/", "/jobs/%00/", "/jobs/%3Cscript%3E/"]))
def test_job_detail__non_numeric_ids_are_not_found(admin, unchanged, path):
    assert admin.get(path).status_code == 404
    unchanged()


@FEW
@given(task=hostile, state=hostile)
def test_failures__any_task_and_state(admin, unchanged, task, state):
    for headers in ({}, {"HTTP_HX_Request": "true"}):
        body = _ok(admin.get("/failures/", {"task": task, "state": state}, **headers))
        _inert(body, task, state)
    unchanged()


@FEW
@given(name=hostile, junk=hostile)
def test_queues_and_tasks__any_parameters(admin, unchanged, name, junk):
    for url in ("/queues/", "/tasks/", "/", "/maintenance/"):
        body = _ok(admin.get(url, {"name": name, "task": junk, "state": junk}))
        _inert(body, name, junk)
    unchanged()


@FEW
@given(threshold=hostile.filter(lambda v: v not in {"", "1", "2", "5", "10", "15", "30", "60"}))
def test_workers__bad_threshold_is_ignored_with_a_sentence(admin, unchanged, threshold):
    body = _ok(admin.get("/workers/", {"threshold": threshold}))
    _sentence(body, "Ignored the threshold")
    _inert(body, threshold)
    unchanged()


AUDIT_FILTERS = ["user", "action", "outcome", "after", "before", "job", "older_than"]


@FEW
@given(
    params=st.dictionaries(st.sampled_from(AUDIT_FILTERS), hostile, max_size=5),
    export=st.sampled_from(["", "csv", "json", "xml", SCRIPT]),
)
def test_audit__any_filters_and_export(admin, unchanged, params, export):
    response = admin.get("/audit/", {**params, "format": export})
    body = _ok(response)
    assert response.status_code == 200
    if export == "csv":
        assert response["Content-Type"].startswith("text/csv")
        assert body.splitlines()[0].startswith("id,created_at")
    elif export == "json":
        assert response["Content-Type"] == "application/json"
    else:
        _inert(body, *params.values())
    unchanged()


@FEW
@given(
    name=st.sampled_from(["after", "before", "job", "older_than", "outcome"]),
    value=st.one_of(not_a_number, not_a_date, st.integers(max_value=0).map(str)),
)
def test_audit__bad_typed_filters_are_ignored_with_a_sentence(admin, unchanged, name, value):
    body = _ok(admin.get("/audit/", {name: value}))
    _sentence(body, "Ignored the")
    unchanged()


# -- job actions ----------------------------------------------------------------------------

ACTION_NAMES = ["run_now", "retry", "reschedule", "complete", "fail", "remove", "", "drop", SCRIPT]


def _job_ids(seeded) -> list[str]:
    return [str(i) for (i,) in seeded.sql(f"SELECT id FROM {seeded.q}._private_jobs ORDER BY id")]


id_lists = st.one_of(
    st.lists(hostile, max_size=5),
    st.lists(st.integers().map(str), max_size=5),
    st.just([str(n) for n in range(1, 10_002)]),  # one past the limit
    st.just(["1"] * 5_000 + ["x"]),
)


@FEW
@given(
    action=st.sampled_from(ACTION_NAMES),
    scope=st.sampled_from(["ids", "filter", "", SCRIPT]),
    ids=id_lists,
    reason=hostile,
    token=st.one_of(st.none(), hostile),
    options=st.dictionaries(
        st.sampled_from(["run_at", "priority", "attempts", "max_attempts"]), hostile, max_size=4
    ),
    query=st.dictionaries(st.sampled_from(JOB_FILTERS), hostile, max_size=3),
)
def test_job_actions__preview_and_confirm_with_bad_input(
    admin, unchanged, action, scope, ids, reason, token, options, query
):
    form = {"action": action, "scope": scope, "ids": ids, "reason": reason, **options}
    if options:
        form["has_options"] = "1"
    if token is not None:
        form["token"] = token
    response = admin.post("/jobs/actions/?" + urlencode(query), form)
    body = _ok(response)
    if response.status_code == 400:
        assert 'role="alert"' in body and "Nothing was changed" in body
        assert re.search(r"<p>[^<]{10,}</p>", body), "no sentence says why"
    else:
        assert response.status_code == 200, response.status_code
        assert "Preview" in body  # only a preview (or the reschedule form) comes back
    _inert(body, reason, *ids, *options.values())
    unchanged()


BAD_RESCHEDULE = {
    "priority": st.one_of(not_a_number, out_of_smallint),
    "attempts": st.one_of(not_a_number, out_of_smallint, st.just("-1")),
    "max_attempts": st.one_of(not_a_number, out_of_smallint, st.just("0")),
    "run_at": not_a_date,
}


@FEW
@given(
    name_value=st.sampled_from(list(BAD_RESCHEDULE)).flatmap(
        lambda name: st.tuples(st.just(name), BAD_RESCHEDULE[name])
    )
)
def test_job_actions__bad_reschedule_options_are_refused(admin, seeded, unchanged, name_value):
    name, value = name_value
    ids = _job_ids(seeded)[:2]
    form = {"action": "reschedule", "ids": ids, "has_options": "1", name: value}
    response = admin.post("/jobs/actions/", form)
    assert response.status_code == 400
    _sentence(_text(response), "Nothing was changed")
    unchanged()


@pytest.mark.parametrize(
    "run_at", ["1970-01-01T00:00", "2000-01-01 00:00", "9999-12-31T23:59", "2300-01-01T00:00"]
)
def test_job_actions__far_past_and_future_run_at_are_refused(admin, seeded, unchanged, run_at):
    form = {"action": "reschedule", "ids": _job_ids(seeded)[:1], "has_options": "1"}
    response = admin.post("/jobs/actions/", {**form, "run_at": run_at})
    assert response.status_code == 400
    _sentence(_text(response), "in the past", "ten years away")
    unchanged()


def test_job_actions__a_real_preview_with_a_forged_token_changes_nothing(admin, seeded, unchanged):
    ids = _job_ids(seeded)[:3]
    preview = _ok(admin.post("/jobs/actions/", {"action": "complete", "ids": ids}))
    token = re.search(r'name="token" value="([^"]+)"', preview).group(1)
    for forged in (token[:-1] + ("A" if token[-1] != "A" else "B"), token + "x", token[::-1]):
        response = admin.post(
            "/jobs/actions/",
            {"action": "complete", "ids": ids, "reason": "r", "token": forged},
        )
        assert response.status_code == 400
    # The genuine token bound to other ids does not act either.
    response = admin.post(
        "/jobs/actions/", {"action": "complete", "ids": ids[:1], "reason": "r", "token": token}
    )
    assert response.status_code == 400
    unchanged()


@FEW
@given(batch=hostile)
def test_continue_action__unknown_batch(admin, unchanged, batch):
    response = admin.post("/jobs/actions/continue/", {"batch": batch})
    assert response.status_code == 400
    _sentence(_text(response), "Nothing to continue")
    unchanged()


# -- add a job, add a batch -----------------------------------------------------------------

ADD_FIELDS = [
    "identifier",
    "payload",
    "queue",
    "run_at",
    "max_attempts",
    "priority",
    "flags",
    "job_key",
    "job_key_mode",
]


def _add_response_is_clear(response, body: str) -> None:
    assert response.status_code == 200, response.status_code
    names = {t.name for t in response.templates}
    if "worker_admin/add_preview.html" in names:
        return  # the input was valid: a preview, nothing written yet
    assert 'role="alert"' in body, "a refused form says why"
    assert re.search(r"field-error|error-card|callout-danger", body)


@FEW
@given(
    form=st.dictionaries(st.sampled_from(ADD_FIELDS), hostile, max_size=9),
    confirm=st.one_of(st.none(), hostile),
)
def test_add_job__any_form_values(admin, unchanged, form, confirm):
    if confirm is not None:
        form = {**form, "confirm": "1", "token": confirm}
    response = admin.post("/jobs/add/", form)
    body = _ok(response)
    _add_response_is_clear(response, body)
    _inert(body, *form.values())
    unchanged()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile, inner, max_size=3),
    max_leaves=8,
)
job_items = st.dictionaries(
    st.sampled_from(
        [
            "identifier",
            "payload",
            "queue_name",
            "run_at",
            "max_attempts",
            "priority",
            "flags",
            "job_key",
            "job_key_mode",
            "bogus",
        ]
    ),
    json_values,
    max_size=6,
)


@FEW
@given(
    items=st.one_of(
        hostile,
        st.lists(job_items, max_size=4).map(lambda x: json.dumps(x)),
        json_values.map(lambda x: json.dumps(x)),
    ),
    confirm=st.one_of(st.none(), hostile),
)
def test_add_batch__any_pasted_text(admin, unchanged, items, confirm):
    form = {"items": items}
    if confirm is not None:
        form |= {"confirm": "1", "token": confirm}
    response = admin.post("/jobs/add/batch/", form)
    body = _ok(response)
    _add_response_is_clear(response, body)
    unchanged()


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe\x00[",  # not UTF-8
        b"",
        b"[" + b'{"identifier":"t"},' * 10_001 + b'{"identifier":"t"}]',  # past the item limit
        b'[{"identifier": "t", "payload": {"a": "\\u0000"}, "run_at": "0001-01-01T00:00:00Z"}]',
        b'[{"identifier": "<script>window.__pwned=1</script>", "priority": 99999}]',
    ],
)
def test_add_batch__hostile_uploads(admin, unchanged, content):
    upload = SimpleUploadedFile("batch.json", content, content_type="application/json")
    response = admin.post("/jobs/add/batch/", {"file": upload})
    body = _ok(response)
    _add_response_is_clear(response, body)
    assert "add_preview" not in {t.name for t in response.templates}
    _inert(body, SCRIPT)
    unchanged()


# -- maintenance: sweep, force-unlock, cleanup, add-recovery, undo -------------------------


def _maintenance_response_is_clear(response, body: str) -> None:
    if response.status_code == 400:
        assert 'role="alert"' in body and "Nothing was changed" in body
    else:
        assert response.status_code == 200, response.status_code
        names = {t.name for t in response.templates}
        assert any(n.endswith("_preview.html") for n in names), names  # a dry run / preview


@FEW
@given(
    form=st.dictionaries(
        st.sampled_from(["threshold_minutes", "delay_seconds", "include_node", "reason"]),
        hostile,
        max_size=4,
    ),
    token=st.one_of(st.none(), hostile),
)
def test_sweep__any_form_values(admin, unchanged, form, token):
    if token is not None:
        form = {**form, "token": token}
    response = admin.post("/maintenance/sweep/", form)
    body = _ok(response)
    _maintenance_response_is_clear(response, body)
    _inert(body, *form.values())
    unchanged()


worker_id_text = st.one_of(
    hostile,
    st.just("\n".join(f"w{n}" for n in range(1_001))),
    st.just("x" * 1_001),
    st.just("x" * 60_000),
    st.lists(hostile, max_size=6).map("\n".join),
    st.just(" , \n ,"),
)


@FEW
@given(worker_ids=worker_id_text, token=st.one_of(st.none(), hostile), reason=hostile)
def test_force_unlock__any_worker_ids(admin, unchanged, worker_ids, token, reason):
    form = {"worker_ids": worker_ids, "reason": reason}
    if token is not None:
        form["token"] = token
    response = admin.post("/maintenance/force-unlock/", form)
    body = _ok(response)
    _maintenance_response_is_clear(response, body)
    _inert(body, worker_ids, reason)
    unchanged()


@FEW
@given(
    tasks=st.lists(
        st.one_of(
            st.sampled_from(["GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS", "DELETE_PERMAFAILED_JOBS"]),
            hostile,
        ),
        max_size=4,
    ),
    keep=st.one_of(hostile, st.just("k\n" * 12_000)),
    token=st.one_of(st.none(), hostile),
)
def test_cleanup__any_tasks_and_keep_list(admin, unchanged, tasks, keep, token):
    form = {"tasks": tasks, "keep": keep}
    if token is not None:
        form["token"] = token
    response = admin.post("/maintenance/cleanup/", form)
    body = _ok(response)
    _maintenance_response_is_clear(response, body)
    _inert(body, keep, *tasks)
    unchanged()


@FEW
@given(token=hostile)
def test_add_recovery__forged_token(admin, unchanged, token):
    response = admin.post("/maintenance/add-recovery/", {"token": token})
    assert response.status_code in (302, 400)
    if response.status_code == 400:
        _sentence(_text(response), "Nothing was changed")
    unchanged()


@pytest.fixture
def undoable_entry(admin, seeded):
    """A real, done reschedule (through the console) whose undo the tests then try to forge."""
    ids = _job_ids(seeded)[:2]
    form = {"action": "reschedule", "ids": ids, "has_options": "1", "priority": "7"}
    preview = _ok(admin.post("/jobs/actions/", form))
    token = re.search(r'name="token" value="([^"]+)"', preview).group(1)
    admin.post("/jobs/actions/", {**form, "token": token, "reason": "set up"})
    return AuditEntry.objects.get(action="reschedule", outcome="done")


@FEW
@given(token=hostile, entry=st.one_of(st.none(), st.integers(min_value=0, max_value=10**30)))
def test_undo__forged_tokens_and_unknown_entries(admin, undoable_entry, unchanged, token, entry):
    entry_id = undoable_entry.pk if entry is None else entry
    response = admin.post(f"/audit/{entry_id}/undo/", {"token": token})
    assert response.status_code in (400, 404)
    if response.status_code == 400:
        _sentence(_text(response), "Nothing was changed")
    unchanged()


# -- reveal a payload, log in -----------------------------------------------------------------


@FEW
@given(reason=hostile, which=st.one_of(st.none(), st.integers(min_value=0, max_value=10**20)))
@example(reason="why\x00not", which=None)
def test_reveal_payload__any_reason_and_job(admin, seeded, worker_schema, reason, which):
    """Revealing is audited (a done entry is its record), but it never changes a job."""
    before = _state(worker_schema)[:-1]
    job_id = _job_ids(seeded)[0] if which is None else which
    response = admin.post(f"/jobs/{job_id}/reveal/", {"reason": reason})
    assert response.status_code in (200, 404)
    body = _text(response)
    if response.status_code == 404:
        _sentence(body, "There is no job", "Not found", "not found")
    _inert(body, reason)
    assert _state(worker_schema)[:-1] == before


@FEW
@given(username=hostile, password=hostile)
def test_login__any_username_and_password(client, seeded, unchanged, username, password):
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code in (200, 403, 429), response.status_code
    body = _text(response)
    _inert(body, username)
    if response.status_code == 200:
        _sentence(body, "do not match", "This field is required", "Log in")
    unchanged()


# -- NUL, the character PostgreSQL text cannot hold, in every field at once -------------------

NUL = "nul\x00here"
GET_FIELDS = {
    "/jobs/": [*JOB_FILTERS],
    "/failures/": ["task", "state"],
    "/queues/": ["name"],
    "/tasks/": ["name"],
    "/workers/": ["threshold"],
    "/audit/": AUDIT_FILTERS,
    "/": ["x"],
    "/maintenance/": ["x"],
}
POST_FIELDS = {
    "/jobs/actions/": [
        "action",
        "scope",
        "ids",
        "reason",
        "token",
        "has_options",
        "run_at",
        "priority",
        "attempts",
        "max_attempts",
    ],
    "/jobs/actions/continue/": ["batch"],
    "/jobs/add/": [*ADD_FIELDS, "confirm", "token"],
    "/jobs/add/batch/": ["items", "confirm", "token"],
    "/maintenance/sweep/": [
        "threshold_minutes",
        "delay_seconds",
        "include_node",
        "reason",
        "token",
    ],
    "/maintenance/force-unlock/": ["worker_ids", "reason", "token"],
    "/maintenance/cleanup/": ["tasks", "keep", "reason", "token"],
    "/maintenance/add-recovery/": ["token", "reason"],
}


@pytest.mark.parametrize("url", list(GET_FIELDS))
def test_nul_in_every_query_parameter(admin, unchanged, url):
    response = admin.get(url, dict.fromkeys(GET_FIELDS[url], NUL))
    assert response.status_code == 200
    unchanged()


@pytest.mark.parametrize("url", list(POST_FIELDS))
def test_nul_in_every_form_field(admin, unchanged, url):
    response = admin.post(url, dict.fromkeys(POST_FIELDS[url], NUL))
    assert response.status_code < 500
    assert response.status_code in (200, 302, 400), response.status_code
    unchanged()


def test_nul_in_a_valid_looking_action(admin, seeded, unchanged):
    """Everything valid but the reason: the action is refused, and the refusal is recorded
    (with a stand-in for the NUL) rather than lost to a database error."""
    ids = _job_ids(seeded)[:1]
    response = admin.post("/jobs/actions/", {"action": "complete", "ids": ids, "reason": NUL})
    assert response.status_code == 400
    _sentence(_text(response), "reason")
    rejected = AuditEntry.objects.filter(outcome="rejected").latest("id")
    assert rejected.parameters["reason"] == "nul\ufffdhere"
    unchanged()


# Characters that str.isdigit() calls digits but int() refuses (superscripts, circled numbers),
# and digits of other scripts, which int() reads.
ODD_DIGITS = ["¹", "²³", "①②", "٣", "１２", "9¹"]


@pytest.mark.parametrize("value", ODD_DIGITS)
def test_odd_digits_in_ids_search_and_thresholds(admin, seeded, unchanged, value):
    assert admin.get("/jobs/", {"q": value}).status_code == 200
    assert admin.get("/workers/", {"threshold": value}).status_code == 200
    assert admin.get("/audit/", {"job": value, "older_than": value}).status_code == 200
    response = admin.post("/jobs/actions/", {"action": "complete", "ids": [value]})
    assert response.status_code == 400
    assert admin.get(f"/jobs/{value}/").status_code == 404
    unchanged()


@pytest.mark.parametrize("username", ["x" * 151, "x" * 10_000, "ﷺ" * 100, "a\x00b"])
def test_login__over_long_or_odd_user_names_are_just_wrong(client, db, username):
    response = client.post("/login/", {"username": username, "password": "anything"})
    assert response.status_code == 200
    assert "do not match" in _text(response)
