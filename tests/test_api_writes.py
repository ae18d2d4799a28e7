"""The API's writes: preview, then apply with the fingerprint; roles, READ_ONLY, 409 on a stale
fingerprint, bad input; every write and every refusal audited with via=api."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.test_api import Api, user_with_token
from worker_admin.audit import AuditEntry
from worker_admin.models import Job, JobQueue, Task

PREVIEW, APPLY = "/api/jobs/actions/preview", "/api/jobs/actions/apply"


@pytest.fixture
def viewer_api(client, django_user_model):
    return Api(client, user_with_token(django_user_model, "viewer", "viewer1")[1])


@pytest.fixture
def operator_api(client, django_user_model):
    return Api(client, user_with_token(django_user_model, "operator", "op1")[1])


@pytest.fixture
def admin_api(client, django_user_model):
    return Api(client, user_with_token(django_user_model, "admin", "admin1")[1])


def _jobs():
    return Job.objects.all()


def _snapshot():
    """Every job row as it stands, to prove a refused write changed nothing."""
    return sorted(
        _jobs().values_list(
            "id", "run_at", "priority", "attempts", "max_attempts", "locked_at", "key", "revision"
        )
    )


def _preview_and_apply(api, body: dict, *, reason: str = ""):
    preview = api.post(PREVIEW, body)
    assert preview.status_code == 200, preview.content
    fingerprint = preview.json()["fingerprint"]
    applied = api.post(APPLY, body | {"fingerprint": fingerprint, "reason": reason})
    return preview.json(), applied


def _api_entries(**filters):
    return AuditEntry.objects.filter(via=AuditEntry.Via.API, **filters)


# -- the round trip per action --------------------------------------------------------------------


def test_run_now__changes_exactly_the_previewed_jobs(operator_api, jobs):
    chosen = [jobs.scheduled(), jobs.scheduled()]
    other = jobs.scheduled()
    preview, applied = _preview_and_apply(
        operator_api, {"action": "run_now", "ids": [j.id for j in chosen]}
    )
    assert (preview["count"], preview["will_change"], preview["locked"]) == (2, 2, 0)
    assert [row["id"] for row in preview["rows"]] == sorted(j.id for j in chosen)
    assert applied.status_code == 200, applied.content
    assert applied.json()["changed"] == 2
    now = timezone.now()
    for job in chosen:
        assert Job.objects.get(id=job.id).run_at <= now
    assert Job.objects.get(id=other.id).run_at == other.run_at
    entry = _api_entries(action="run_now", outcome="done").get()
    assert sorted(entry.changed_ids) == sorted(j.id for j in chosen)
    assert entry.actor_name == "op1"


def test_retry__gives_failed_jobs_their_attempts_back(operator_api, jobs):
    failed = jobs.failed()
    _preview, applied = _preview_and_apply(operator_api, {"action": "retry", "ids": [failed.id]})
    assert applied.status_code == 200
    assert Job.objects.get(id=failed.id).attempts == 0


def test_reschedule__sets_the_given_values_and_keeps_the_rest(operator_api, jobs):
    job = jobs.ready(priority=1)
    run_at = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    body = {
        "action": "reschedule",
        "ids": [job.id],
        "run_at": run_at.isoformat(),
        "priority": -5,
        "max_attempts": 7,
    }
    _preview, applied = _preview_and_apply(operator_api, body)
    assert applied.status_code == 200, applied.content
    after = Job.objects.get(id=job.id)
    assert (after.run_at, after.priority, after.max_attempts, after.attempts) == (
        run_at,
        -5,
        7,
        job.attempts,
    )
    entry = _api_entries(action="reschedule", outcome="done").get()
    assert entry.parameters["priority"] == -5


def test_reschedule__run_at_now(operator_api, jobs):
    job = jobs.scheduled()
    _preview, applied = _preview_and_apply(
        operator_api, {"action": "reschedule", "ids": [job.id], "run_at": "now", "priority": 2}
    )
    assert applied.status_code == 200
    after = Job.objects.get(id=job.id)
    assert after.run_at <= timezone.now() and after.priority == 2


def test_complete__needs_a_reason_then_deletes(operator_api, jobs):
    job = jobs.ready()
    preview = operator_api.post(PREVIEW, {"action": "complete", "ids": [job.id]}).json()
    assert preview["requires_reason"] is True
    assert any("deletes 1 job" in w for w in preview["warnings"])
    body = {"action": "complete", "ids": [job.id], "fingerprint": preview["fingerprint"]}
    refused = operator_api.post(APPLY, body)
    assert refused.status_code == 400 and "reason" in refused.json()["detail"]
    assert Job.objects.filter(id=job.id).exists()
    done = operator_api.post(APPLY, body | {"reason": "duplicate order"})
    assert done.status_code == 200
    assert not Job.objects.filter(id=job.id).exists()
    entry = _api_entries(action="complete", outcome="done").get()
    assert entry.reason == "duplicate order" and entry.before_image[0]["id"] == job.id


def test_fail__records_the_reason_as_last_error(operator_api, jobs):
    job = jobs.ready()
    _preview, applied = _preview_and_apply(
        operator_api, {"action": "fail", "ids": [job.id]}, reason="bad customer data"
    )
    assert applied.status_code == 200
    after = Job.objects.get(id=job.id)
    assert after.attempts == after.max_attempts and after.last_error == "bad customer data"


def test_remove__by_key(operator_api, jobs):
    job = jobs.add(job_key="welcome:7")
    keep = jobs.add(job_key="welcome:8")
    _preview, applied = _preview_and_apply(
        operator_api, {"action": "remove", "key": "welcome:7"}, reason="sent by hand"
    )
    assert applied.status_code == 200, applied.content
    assert not Job.objects.filter(id=job.id).exists()
    assert Job.objects.filter(id=keep.id).exists()
    missing = operator_api.post(PREVIEW, {"action": "remove", "key": "nobody"})
    assert missing.status_code == 404


def test_filter_target__skips_locked_jobs_and_changes_only_matching(operator_api, jobs):
    matching = [jobs.failed("charge") for _ in range(3)]
    locked = jobs.locked(identifier="charge")
    jobs.failed("other")
    body = {"action": "retry", "filter": {"task": "charge"}}
    preview, applied = _preview_and_apply(operator_api, body)
    assert (preview["count"], preview["locked"], preview["will_change"]) == (4, 1, 3)
    assert applied.status_code == 200
    result = applied.json()
    assert (result["changed"], result["skipped"]) == (3, 1)
    assert all(Job.objects.get(id=j.id).attempts == 0 for j in matching)
    assert Job.objects.get(id=locked.id).attempts == locked.attempts
    entry = _api_entries(action="retry", outcome="done").get()
    assert entry.filter == {"task": "charge"}
    assert entry.skipped_ids == [locked.id]


# -- 409: the fingerprint no longer matches -------------------------------------------------------


def test_preview__pins_the_jobs_and_shows_before_and_after(operator_api, jobs):
    job = jobs.failed("charge")
    preview = operator_api.post(PREVIEW, {"action": "retry", "ids": [job.id]}).json()
    assert preview["pinned_ids"] == [job.id]
    (row,) = preview["changes"]
    assert row["id"] == job.id
    assert row["changes"][0] == {"column": "attempts", "before": job.attempts, "after": 0}
    assert [change["column"] for change in row["changes"]] == ["attempts", "run_at"]


def test_pinned_targets__a_job_added_to_the_filter_is_left_alone_and_reported(operator_api, jobs):
    pinned = jobs.failed("charge")
    body = {"action": "retry", "filter": {"task": "charge", "state": "failed"}}
    preview = operator_api.post(PREVIEW, body).json()
    assert preview["pinned_ids"] == [pinned.id]
    late = jobs.failed("charge")  # a new failure arrives between preview and apply
    response = operator_api.post(APPLY, body | {"fingerprint": preview["fingerprint"]})
    assert response.status_code == 200, response.content
    assert response.json()["summary"] == (
        "changed 1 of 1; 1 that started to match the filter after the preview left alone"
    )
    assert Job.objects.get(id=pinned.id).attempts == 0
    assert Job.objects.get(id=late.id).attempts == late.attempts  # never pinned, never touched
    entry = _api_entries(action="retry", outcome="done").get()
    assert entry.requested_ids == [pinned.id] and late.id not in entry.changed_ids


def test_pinned_targets__a_job_changed_meanwhile_is_skipped_and_reported(operator_api, jobs):
    job, other = jobs.scheduled(), jobs.scheduled()
    body = {"action": "run_now", "ids": [job.id, other.id]}
    fingerprint = operator_api.post(PREVIEW, body).json()["fingerprint"]
    jobs.set(job, priority="-5")
    changed_meanwhile = Job.objects.get(id=job.id)
    response = operator_api.post(APPLY, body | {"fingerprint": fingerprint})
    assert response.status_code == 200, response.content
    assert response.json()["summary"] == "changed 1 of 2; 1 changed since the preview"
    assert response.json()["changed_since_preview"] == 1
    kept = Job.objects.get(id=job.id)
    assert (kept.priority, kept.run_at, kept.revision) == (
        -5, changed_meanwhile.run_at, changed_meanwhile.revision,
    )  # fmt: skip
    entry = _api_entries(action="run_now", outcome="done").get()
    assert entry.changed_ids == [other.id] and entry.parameters["changed_since_preview"] == [job.id]


def test_stale_fingerprint__other_options_are_409(operator_api, jobs):
    job = jobs.ready()
    body = {"action": "reschedule", "ids": [job.id], "priority": 5}
    fingerprint = operator_api.post(PREVIEW, body).json()["fingerprint"]
    response = operator_api.post(APPLY, body | {"priority": 6, "fingerprint": fingerprint})
    assert response.status_code == 409
    assert Job.objects.get(id=job.id).priority == job.priority
    other_action = operator_api.post(
        APPLY, {"action": "run_now", "ids": [job.id], "fingerprint": fingerprint}
    )
    assert other_action.status_code == 409


def test_stale_fingerprint__applying_twice_is_409(operator_api, jobs):
    job = jobs.ready()
    body = {"action": "reschedule", "ids": [job.id], "priority": 9}
    fingerprint = operator_api.post(PREVIEW, body).json()["fingerprint"]
    assert operator_api.post(APPLY, body | {"fingerprint": fingerprint}).status_code == 200
    assert operator_api.post(APPLY, body | {"fingerprint": fingerprint}).status_code == 409


def test_fingerprint__forged_or_from_another_user_is_refused(
    client, operator_api, jobs, django_user_model
):
    job = jobs.ready()
    body = {"action": "run_now", "ids": [job.id]}
    fingerprint = operator_api.post(PREVIEW, body).json()["fingerprint"]
    assert operator_api.post(APPLY, body | {"fingerprint": "abc"}).status_code == 400
    other = Api(client, user_with_token(django_user_model, "operator", "op2")[1])
    assert other.post(APPLY, body | {"fingerprint": fingerprint}).status_code == 409


# -- roles and READ_ONLY --------------------------------------------------------------------------


def test_viewer__writes_are_403_audited_and_change_nothing(viewer_api, jobs):
    job = jobs.scheduled()
    before = _snapshot()
    for path, body in (
        (PREVIEW, {"action": "run_now", "ids": [job.id]}),
        (APPLY, {"action": "run_now", "ids": [job.id], "fingerprint": "x"}),
        ("/api/jobs/add/preview", {"identifier": "send_email"}),
        ("/api/jobs/batch/apply", {"jobs": [{"identifier": "a"}], "fingerprint": "x"}),
        ("/api/maintenance/cleanup/preview", {}),
        (PREVIEW, {"action": "run_now", "ids": ["not an id"]}),  # the role is checked first
    ):
        response = viewer_api.post(path, body)
        assert response.status_code == 403, path
        assert "viewer role" in response.json()["detail"]
    assert _snapshot() == before
    entries = _api_entries(outcome="rejected")
    assert entries.count() == 6
    assert {e.actor_name for e in entries} == {"viewer1"}
    assert set(entries.values_list("action", flat=True)) == {
        "run_now",
        "add_job",
        "add_jobs",
        "cleanup",
    }


def test_csrf_does_not_apply_to_token_requests(django_user_model, jobs):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    job = jobs.scheduled()
    api = Api(strict, user_with_token(django_user_model, "operator", "op9")[1])
    _preview, applied = _preview_and_apply(api, {"action": "run_now", "ids": [job.id]})
    assert applied.status_code == 200
    assert strict.post("/jobs/actions/", {"action": "run_now", "ids": [job.id]}).status_code in (
        302,
        403,
    )  # the console's own form still needs a session and its CSRF token


def test_operator__maintenance_is_403(operator_api, jobs):
    response = operator_api.post("/api/maintenance/force-unlock/preview", {"worker_ids": ["w"]})
    assert response.status_code == 403
    assert "admin role" in response.json()["detail"]


def test_read_only__every_write_is_403(admin_api, jobs, settings):
    settings.READ_ONLY = True
    job = jobs.ready()
    response = admin_api.post(PREVIEW, {"action": "run_now", "ids": [job.id]})
    assert response.status_code == 403 and "read-only" in response.json()["detail"]
    assert admin_api.post("/api/maintenance/sweep/preview", {}).status_code == 403
    assert admin_api.get(f"/api/jobs/{job.id}").status_code == 200  # reads still work


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"action": "explode", "ids": [1]}, 422, "action"),
        ({"action": "run_now"}, 400, "exactly one target"),
        ({"action": "run_now", "ids": [1], "key": "k"}, 400, "exactly one target"),
        ({"action": "run_now", "ids": []}, 422, "ids"),
        ({"action": "run_now", "ids": ["one"]}, 422, "ids.0"),
        ({"action": "run_now", "ids": [-3]}, 422, "ids.0"),
        ({"action": "run_now", "ids": [2**64]}, 422, "ids.0"),
        ({"action": "run_now", "ids": list(range(1, 10_002))}, 422, "10000"),
        ({"action": "run_now", "ids": [1], "colour": "red"}, 422, "colour"),
        ({"action": "run_now", "ids": [1], "priority": 3}, 400, "only apply to reschedule"),
        ({"action": "reschedule", "ids": [1]}, 400, "Nothing to change"),
        ({"action": "reschedule", "ids": [1], "priority": 40_000}, 422, "priority"),
        ({"action": "reschedule", "ids": [1], "attempts": -1}, 422, "attempts"),
        ({"action": "reschedule", "ids": [1], "max_attempts": 0}, 422, "max_attempts"),
        (
            {"action": "reschedule", "ids": [1], "run_at": "2001-01-01T00:00:00Z"},
            400,
            "in the past",
        ),
        (
            {"action": "reschedule", "ids": [1], "run_at": "2999-01-01T00:00:00Z"},
            400,
            "ten years",
        ),
        ({"action": "reschedule", "ids": [1], "run_at": "2030-01-01T00:00:00"}, 422, "run_at"),
        ({"action": "fail", "filter": {"state": "failed", "sort": "x"}}, 422, "sort"),
        ({"action": "remove", "filter": {"task": "a"}}, 400, "one job at a time"),
        ({"action": "run_now", "ids": [1], "reason": "x" * 3000}, 422, "reason"),
        ({"action": "run_now", "ids": [999_999]}, 404, "None of the chosen jobs"),
    ],
)
def test_bad_input__a_sentence_and_an_audit_entry(operator_api, jobs, body, status, words):
    job = jobs.ready()
    body = {k: ([job.id] if v == [1] else v) for k, v in body.items()}
    before = _snapshot()
    response = operator_api.post(PREVIEW, body)
    assert response.status_code == status, response.content
    message = response.json()["detail"]
    assert isinstance(message, str) and words in message, message
    assert _snapshot() == before
    assert _api_entries(outcome="rejected").count() == 1


@pytest.mark.parametrize(
    "raw, words",
    [
        ("{not json", "not valid JSON"),
        ('{"action": "run_now", "ids": [NaN]}', "NaN"),
        ("[1, 2]", "valid dictionary"),
        ("", "needs a JSON object"),
        ('"text"', "valid dictionary"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"action": "run_now", "key": "\\ud800"}', "unpaired surrogate"),
    ],
)
def test_bad_input__malformed_json(operator_api, jobs, raw, words):
    response = operator_api.post(PREVIEW, raw=raw)
    assert response.status_code in (400, 422), response.content
    assert words in response.json()["detail"], response.json()["detail"]


def test_bad_input__a_body_over_the_upload_limit_is_400(operator_api, jobs, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    ids = list(range(1, 1000))
    response = operator_api.post(PREVIEW, {"action": "run_now", "ids": ids})
    assert response.status_code == 400
    assert "larger than the server accepts" in response.json()["detail"]
    assert _api_entries(outcome="rejected").count() == 1


def test_paired_surrogate_escapes_are_text(operator_api, jobs):
    raw = '{"identifier": "party", "payload": {"mood": "\\ud83c\\udf89"}}'
    response = operator_api.post("/api/jobs/add/preview", raw=raw)
    assert response.status_code == 200, response.content
    assert response.json()["job"]["payload"] == {"mood": "\U0001f389"}


def test_bad_input__over_the_bulk_limit(operator_api, jobs, settings):
    settings.BULK_ACTION_LIMIT = 2
    for _ in range(3):
        jobs.failed()
    response = operator_api.post(PREVIEW, {"action": "retry", "filter": {"state": "failed"}})
    assert response.status_code == 400
    assert "More than 2 jobs" in response.json()["detail"]


def test_sql_or_html_in_values_is_just_text(operator_api, jobs):
    response = operator_api.post(
        PREVIEW, {"action": "run_now", "filter": {"task": "x'; DROP TABLE jobs; --<b>"}}
    )
    assert response.status_code == 200
    assert response.json()["count"] == 0 or response.json()["rows"] == []


# -- adding jobs ----------------------------------------------------------------------------------

ADD_PREVIEW, ADD_APPLY = "/api/jobs/add/preview", "/api/jobs/add/apply"


def test_add__preview_then_apply_adds_one_job(operator_api, jobs):
    body = {
        "identifier": "send_email",
        "payload": {"to": "a@example.org"},
        "queue_name": "mail",
        "priority": 2,
        "flags": ["vip"],
    }
    preview = operator_api.post(ADD_PREVIEW, body)
    assert preview.status_code == 200, preview.content
    assert Job.objects.count() == 0
    assert preview.json()["job"]["queue_name"] == "mail"
    assert any("send_email" in w for w in preview.json()["warnings"])  # unknown task
    applied = operator_api.post(ADD_APPLY, body | {"fingerprint": preview.json()["fingerprint"]})
    assert applied.status_code == 201, applied.content
    job = Job.objects.get()
    assert applied.json()["job"]["id"] == job.id
    assert (job.payload, job.priority, job.flag_names) == ({"to": "a@example.org"}, 2, ["vip"])
    assert JobQueue.objects.filter(queue_name="mail").exists()
    entry = _api_entries(action="add_job", outcome="done").get()
    assert entry.changed_ids == [job.id]
    # The same fingerprint adds nothing a second time.
    again = operator_api.post(ADD_APPLY, body | {"fingerprint": preview.json()["fingerprint"]})
    assert again.status_code == 409 and "already applied" in again.json()["detail"]
    assert Job.objects.count() == 1


def test_add__a_key_held_by_a_job_that_changes_meanwhile_is_409(operator_api, jobs):
    holder = jobs.add("send_email", {"v": 1}, job_key="order:1")
    body = {"identifier": "send_email", "payload": {"v": 2}, "job_key": "order:1"}
    preview = operator_api.post(ADD_PREVIEW, body).json()
    assert preview["key_holder"]["id"] == holder.id
    assert "Replaces the payload" in preview["key_effect"]["text"]
    jobs.set(holder, locked_at="now()", locked_by="'graphile_worker_x'")
    response = operator_api.post(ADD_APPLY, body | {"fingerprint": preview["fingerprint"]})
    assert response.status_code == 409
    assert Job.objects.get(id=holder.id).payload == {"v": 1}
    assert Job.objects.count() == 1


def test_add__unsafe_dedupe_returns_the_keyed_job(operator_api, jobs):
    holder = jobs.add("send_email", {"v": 1}, job_key="order:2")
    body = {
        "identifier": "send_email",
        "payload": {"v": 2},
        "job_key": "order:2",
        "job_key_mode": "unsafe_dedupe",
    }
    preview = operator_api.post(ADD_PREVIEW, body).json()
    applied = operator_api.post(ADD_APPLY, body | {"fingerprint": preview["fingerprint"]})
    assert applied.status_code == 201
    assert applied.json()["job"]["id"] == holder.id
    assert Job.objects.get(id=holder.id).payload == {"v": 1}


def test_add__a_nul_in_the_payload_is_stored_and_the_audit_keeps_its_hash(operator_api, jobs):
    """The payload column (json) takes a \\u0000 escape; the audit log (jsonb) does not."""
    raw = '{"identifier": "a", "payload": {"s": "x\\u0000y \\\\u0000"}%s}'
    preview = operator_api.post(ADD_PREVIEW, raw=raw % "")
    assert preview.status_code == 200, preview.content
    fingerprint = preview.json()["fingerprint"]
    applied = operator_api.post(ADD_APPLY, raw=raw % f', "fingerprint": "{fingerprint}"')
    assert applied.status_code == 201, applied.content
    assert Job.objects.get().payload == {"s": "x\x00y \\u0000"}
    entry = _api_entries(action="add_job", outcome="done").get()
    assert entry.parameters["payload"] is None and len(entry.parameters["payload_sha256"]) == 64


def test_add__a_deeply_nested_payload_is_previewed_or_refused_never_a_500(operator_api, jobs):
    deep = "[" * 600 + "]" * 600
    ok = operator_api.post(ADD_PREVIEW, raw='{"identifier": "a", "payload": ' + deep + "}")
    assert ok.status_code == 200, ok.content
    refused = operator_api.post(
        ADD_PREVIEW,
        raw='{"identifier": "a", "run_at": "2001-01-01T00:00:00Z", "payload": ' + deep + "}",
    )
    assert refused.status_code == 400 and "in the past" in refused.json()["detail"]
    entry = _api_entries(action="add_job", outcome="rejected").get()
    assert entry.parameters["payload_bytes"] == 1200


@pytest.mark.parametrize(
    "body, words",
    [
        ({}, "identifier"),
        ({"identifier": ""}, "identifier"),
        ({"identifier": "a", "priority": -40_000}, "priority"),
        ({"identifier": "a", "max_attempts": 0}, "max_attempts"),
        ({"identifier": "a", "run_at": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"identifier": "a", "run_at": "2200-01-01T00:00:00Z"}, "in the future"),
        ({"identifier": "a", "job_key_mode": "replace"}, "needs a job_key"),
        ({"identifier": "a", "job_key_mode": "unsafe_dedupe"}, "needs a job_key"),
        ({"identifier": "a", "queue_name": "q\x00"}, "queue_name"),
        ({"identifier": "a", "payload": "x" * (1024 * 1024 + 10)}, "limit is 1,048,576 bytes"),
        ({"identifier": "a", "colour": "red"}, "colour"),
        ({"identifier": "a", "flags": [""]}, "flags"),
    ],
)
def test_add__bad_input(operator_api, jobs, body, words):
    response = operator_api.post(ADD_PREVIEW, body)
    assert response.status_code in (400, 422), response.content
    assert words in response.json()["detail"], response.json()["detail"]
    assert Job.objects.count() == 0
    assert _api_entries(action="add_job", outcome="rejected").count() == 1


BATCH_PREVIEW, BATCH_APPLY = "/api/jobs/batch/preview", "/api/jobs/batch/apply"


def test_batch__preview_then_apply(operator_api, jobs):
    body = {
        "jobs": [
            {"identifier": "report", "payload": {"id": 1}},
            {"identifier": "report", "payload": {"id": 2}, "job_key": "r2"},
        ]
    }
    preview = operator_api.post(BATCH_PREVIEW, body)
    assert preview.status_code == 200, preview.content
    assert (preview.json()["count"], preview.json()["keyed"]) == (2, 1)
    applied = operator_api.post(BATCH_APPLY, body | {"fingerprint": preview.json()["fingerprint"]})
    assert applied.status_code == 201, applied.content
    assert sorted(Job.objects.values_list("payload", flat=True), key=str) == [{"id": 1}, {"id": 2}]
    entry = _api_entries(action="add_jobs", outcome="done").get()
    assert sorted(entry.changed_ids) == sorted(applied.json()["job_ids"])
    assert (
        operator_api.post(
            BATCH_APPLY, body | {"fingerprint": preview.json()["fingerprint"]}
        ).status_code
        == 409
    )
    assert Job.objects.count() == 2


def test_batch__one_bad_item_refuses_the_whole_batch(operator_api, jobs):
    body = {
        "jobs": [
            {"identifier": "report", "job_key": "same"},
            {"identifier": "report", "job_key": "same"},
        ]
    }
    response = operator_api.post(BATCH_PREVIEW, body)
    assert response.status_code == 400
    assert "item 1" in response.json()["detail"]
    unsafe = operator_api.post(
        BATCH_PREVIEW,
        {"jobs": [{"identifier": "a", "job_key": "k", "job_key_mode": "unsafe_dedupe"}]},
    )
    assert unsafe.status_code == 400 and "unsafe_dedupe" in unsafe.json()["detail"]
    assert operator_api.post(BATCH_PREVIEW, {"jobs": []}).status_code == 422
    assert Job.objects.count() == 0


# -- maintenance ----------------------------------------------------------------------------------


def _dead_worker(jobs, worker_id: str = "graphile_worker_dead") -> Job:
    jobs.sql(
        f"INSERT INTO {jobs.q}._private_workers (id, last_heartbeat_at, started_at) "
        f"VALUES ('{worker_id}', now() - interval '1 hour', now() - interval '2 hours')"
    )
    return jobs.locked(by=worker_id, age="50 minutes")


def test_sweep__dry_run_preview_then_apply(admin_api, jobs):
    job = _dead_worker(jobs)
    preview = admin_api.post("/api/maintenance/sweep/preview", {"threshold_minutes": 10})
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert [w["id"] for w in body["workers"]] == ["graphile_worker_dead"]
    assert [j["id"] for j in body["jobs"]] == [job.id]
    assert Job.objects.get(id=job.id).locked_by == "graphile_worker_dead"  # a dry run
    applied = admin_api.post(
        "/api/maintenance/sweep/apply",
        {"threshold_minutes": 10, "fingerprint": body["fingerprint"], "reason": "host died"},
    )
    assert applied.status_code == 200, applied.content
    assert Job.objects.get(id=job.id).locked_by is None
    entry = _api_entries(action="sweep", outcome="done").get()
    assert entry.reason == "host died" and entry.changed_ids == [job.id]


def test_sweep__another_dead_worker_meanwhile_is_left_alone(admin_api, jobs):
    """The apply acts on what the dry run pinned: a worker found dead after it is not swept."""
    first = _dead_worker(jobs)
    fingerprint = admin_api.post("/api/maintenance/sweep/preview", {}).json()["fingerprint"]
    second = _dead_worker(jobs, "graphile_worker_dead2")
    body = {"fingerprint": fingerprint, "reason": "host died"}
    response = admin_api.post("/api/maintenance/sweep/apply", body)
    assert response.status_code == 200, response.content
    assert response.json()["changed_ids"] == [first.id]
    assert Job.objects.get(id=first.id).locked_by is None
    assert Job.objects.get(id=second.id).locked_by == "graphile_worker_dead2"


def test_sweep__other_options_than_the_dry_run_are_409(admin_api, jobs):
    job = _dead_worker(jobs)
    fingerprint = admin_api.post("/api/maintenance/sweep/preview", {}).json()["fingerprint"]
    body = {"fingerprint": fingerprint, "reason": "x", "threshold_minutes": 30}
    response = admin_api.post("/api/maintenance/sweep/apply", body)
    assert (
        response.status_code == 409
        and "differs from what was previewed" in response.json()["detail"]
    )
    assert Job.objects.get(id=job.id).locked_by is not None


def test_force_unlock__preview_then_apply(admin_api, jobs):
    job = jobs.locked(by="pool-dead1")
    other = jobs.locked(by="pool-alive")
    body = {"worker_ids": ["pool-dead1"], "reason": "container gone"}
    preview = admin_api.post("/api/maintenance/force-unlock/preview", body).json()
    assert preview["job_count"] == 1 and preview["jobs"][0]["id"] == job.id
    applied = admin_api.post(
        "/api/maintenance/force-unlock/apply", body | {"fingerprint": preview["fingerprint"]}
    )
    assert applied.status_code == 200, applied.content
    assert applied.json()["jobs_unlocked"] == [job.id]
    assert Job.objects.get(id=job.id).locked_at is None
    assert Job.objects.get(id=other.id).locked_at is not None
    assert _api_entries(action="force_unlock", outcome="done").get().changed_ids == [job.id]


def test_force_unlock__a_new_lock_meanwhile_is_untouched(admin_api, jobs):
    pinned = jobs.locked(by="pool-dead1")
    body = {"worker_ids": ["pool-dead1"], "reason": "container gone"}
    fingerprint = admin_api.post("/api/maintenance/force-unlock/preview", body).json()[
        "fingerprint"
    ]
    later = jobs.locked(by="pool-dead1")
    response = admin_api.post(
        "/api/maintenance/force-unlock/apply", body | {"fingerprint": fingerprint}
    )
    assert response.status_code == 200, response.content
    assert response.json()["jobs_unlocked"] == [pinned.id]
    assert Job.objects.get(id=later.id).locked_at is not None


def test_cleanup__preview_then_apply(admin_api, jobs):
    failed = jobs.failed("old_task")
    kept = jobs.ready("live_task")
    body = {"tasks": ["delete-permanently-failed-jobs", "gc-task-identifiers"], "reason": "old"}
    preview = admin_api.post("/api/maintenance/cleanup/preview", body).json()
    assert preview["failed_job_ids"] == [failed.id]
    assert preview["task_identifiers"] == ["old_task"]
    applied = admin_api.post(
        "/api/maintenance/cleanup/apply", body | {"fingerprint": preview["fingerprint"]}
    )
    assert applied.status_code == 200, applied.content
    assert not Job.objects.filter(id=failed.id).exists()
    assert Job.objects.filter(id=kept.id).exists()
    assert list(Task.objects.values_list("identifier", flat=True)) == ["live_task"]


def test_cleanup__a_new_failure_meanwhile_is_left_alone(admin_api, jobs):
    first = jobs.failed()
    body = {"tasks": ["delete-permanently-failed-jobs"], "reason": "old"}
    fingerprint = admin_api.post("/api/maintenance/cleanup/preview", body).json()["fingerprint"]
    later = jobs.failed()
    response = admin_api.post("/api/maintenance/cleanup/apply", body | {"fingerprint": fingerprint})
    assert response.status_code == 200, response.content
    assert response.json()["deleted_job_ids"] == [first.id]
    assert list(Job.objects.values_list("id", flat=True)) == [later.id]
    other = body | {"reason": "another", "fingerprint": fingerprint}
    assert admin_api.post("/api/maintenance/cleanup/apply", other).status_code == 409
    bad = admin_api.post("/api/maintenance/cleanup/preview", {"tasks": ["everything"]})
    assert bad.status_code == 422
