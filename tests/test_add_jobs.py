"""Adding jobs through the console: the one-job form, the JSON batch, previews, the one-time
confirmation token, the audit entries, bad input and permissions. Real PostgreSQL, Django client."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from worker_admin.audit import AuditEntry
from worker_admin.forms import PAYLOAD_MAX_BYTES
from worker_admin.models import Job

ADD = reverse("worker_admin:add_job")
BATCH = reverse("worker_admin:add_batch")


# -- helpers ----------------------------------------------------------------------------------


def _html(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", response.content.decode()))


def _text(response) -> str:
    """What a reader sees: the page without its tags."""
    return re.sub(r" +", " ", re.sub(r"<[^>]*>", "", _html(response)))


class _HiddenInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "input" and attributes.get("type") == "hidden":
            name = attributes.get("name")
            if name and name != "csrfmiddlewaretoken":
                self.values[name] = attributes.get("value") or ""


def _hidden(response) -> dict[str, str]:
    """The hidden fields of the preview's confirm form, as a browser would send them back."""
    parser = _HiddenInputs()
    parser.feed(response.content.decode())
    assert "token" in parser.values, "the response is not a preview"
    return parser.values


def _jobs() -> list[Job]:
    return list(Job.objects.select_related("task", "job_queue").order_by("id"))


def _audit() -> list[AuditEntry]:
    return list(AuditEntry.objects.order_by("id"))


def _form(**values) -> dict[str, str]:
    data = {"identifier": "send_email", "payload": "{}"}
    data.update({k: str(v) for k, v in values.items()})
    return data


def _local(moment: datetime) -> str:
    """A datetime-local value, as the browser sends it (server time zone: UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _preview_and_confirm(client, url: str, data: dict, files: dict | None = None):
    preview = client.post(url, {**data, **(files or {})})
    assert preview.status_code == 200
    confirm = client.post(url, {**_hidden(preview), "confirm": "1"})
    return preview, confirm


@pytest.fixture
def op(db, django_user_model):
    """A user in the operator group."""
    user = django_user_model.objects.create_user("op-user", password="pw-123456789")
    user.groups.add(Group.objects.get(name="operator"))
    return django_user_model.objects.get(pk=user.pk)


@pytest.fixture
def op_client(client, op):
    client.force_login(op)
    return client


# -- the form and one job ---------------------------------------------------------------------


def test_add_job__get_shows_the_form(op_client):
    response = op_client.get(ADD)
    assert response.status_code == 200
    text = _html(response)
    assert "Add a job" in text and "Preview" in text
    for name in ("identifier", "payload", "queue", "run_at", "max_attempts", "priority"):
        assert f'name="{name}"' in text
    assert 'name="flags"' in text and 'name="job_key"' in text
    assert text.count('name="job_key_mode"') == 3
    assert not _jobs() and not _audit()


def test_add_job__preview_then_confirm_creates_exactly_the_job(op_client, op):
    run_at = (timezone.now() + timedelta(days=30)).replace(second=0, microsecond=0)
    data = _form(
        payload='{"to": "ada@example.com", "n": [1, 2], "nested": {"b": 2, "a": 1}}',
        queue="emails",
        run_at=_local(run_at),
        max_attempts=7,
        priority=-5,
        flags="billing, urgent,billing",
        job_key="welcome-ada",
        job_key_mode="replace",
    )
    preview = op_client.post(ADD, data)
    assert preview.status_code == 200
    text = _text(preview)
    assert "Preview: add a job" in text and "Nothing has been added yet" in text
    assert "send_email" in text and "emails" in text and "(new: it will be created)" in text
    assert run_at.strftime("%Y-%m-%d %H:%M:%S UTC") in text
    assert '"to": "ada@example.com"' in text and "bytes" in text
    assert "No job holds the key “welcome-ada”: a new job is created with it." in text
    assert "No job in this database uses the task “send_email” yet" in text
    assert not _jobs() and not _audit()

    confirm = op_client.post(ADD, {**_hidden(preview), "confirm": "1"})
    (job,) = _jobs()
    assert confirm.status_code == 302
    assert confirm["Location"] == reverse("worker_admin:job_detail", args=[job.id])
    assert job.task.identifier == "send_email"
    assert job.job_queue.queue_name == "emails"
    assert job.payload == {"to": "ada@example.com", "n": [1, 2], "nested": {"b": 2, "a": 1}}
    assert list(job.payload["nested"]) == ["b", "a"]  # the payload keeps its order
    assert job.priority == -5
    assert job.run_at == run_at
    assert job.attempts == 0
    assert job.max_attempts == 7
    assert job.last_error is None
    assert job.key == "welcome-ada"
    assert job.locked_at is None and job.locked_by is None
    assert job.revision == 0
    assert job.flags == {"billing": True, "urgent": True}
    assert job.is_available is True
    assert job.created_at == job.updated_at
    assert abs(job.created_at - timezone.now()) < timedelta(minutes=5)

    (entry,) = _audit()
    assert (entry.action, entry.outcome, entry.via) == ("add_job", "done", "web")
    assert entry.actor == op and entry.actor_name == "op-user"
    assert entry.changed_ids == [job.id]
    assert entry.summary == f"added job {job.id} (send_email)"
    assert entry.parameters["identifier"] == "send_email"
    assert entry.parameters["payload"] == job.payload
    assert entry.parameters["flags"] == ["billing", "urgent"]
    assert entry.parameters["run_at"] == run_at.isoformat()
    assert entry.parameters["job_key_mode"] == "replace"

    detail = op_client.get(confirm["Location"])
    assert f"Added job {job.id} (send_email)." in _text(detail)


def test_add_job__only_an_identifier_takes_the_schema_defaults(op_client):
    _, confirm = _preview_and_confirm(op_client, ADD, {"identifier": "tick", "payload": ""})
    assert confirm.status_code == 302
    (job,) = _jobs()
    assert (job.task.identifier, job.job_queue, job.payload) == ("tick", None, {})
    assert (job.priority, job.max_attempts, job.attempts, job.key, job.flags) == (
        0,
        25,
        0,
        None,
        None,
    )
    assert abs(job.run_at - timezone.now()) < timedelta(minutes=5)


def test_add_job__back_to_the_form_keeps_the_values(op_client):
    preview = op_client.post(ADD, _form(queue="emails", priority=3, payload='{"a": 1}'))
    response = op_client.post(ADD, {**_hidden(preview), "edit": "1"})
    text = _html(response)
    assert response.status_code == 200 and "Add a job" in text
    assert 'value="emails"' in text and 'value="3"' in text and '{"a": 1}' in text
    assert not _jobs() and not _audit()


# -- job keys ---------------------------------------------------------------------------------


@pytest.fixture
def keyed(jobs):
    job = jobs.add("send_email", {"v": "old"}, job_key="k-1")
    return jobs.set(job, revision="4", run_at="now() + interval '2 days'")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("replace", "Replaces the payload of job {id} (revision 4 → 5)"),
        ("preserve_run_at", "keeps run_at of job {id}"),
        ("unsafe_dedupe", "unsafe_dedupe: job {id} is returned unchanged"),
    ],
)
def test_add_job__keyed_preview_says_what_the_mode_does(op_client, keyed, mode, expected):
    preview = op_client.post(ADD, _form(payload='{"v": "new"}', job_key="k-1", job_key_mode=mode))
    text = _text(preview)
    assert f"The key “k-1” belongs to job {keyed.id} (send_email, scheduled, revision 4)." in text
    assert expected.format(id=keyed.id) in text
    if mode == "preserve_run_at":
        assert f"Replaces the payload of job {keyed.id} (revision 4 → 5)" in text
        assert "(kept from the existing job, in " in text
    assert _jobs() == [keyed]


def test_add_job__keyed_preview_of_a_locked_job(op_client, jobs):
    locked = jobs.locked(by="pool-abc", job_key="k-2")
    for mode in ("replace", "preserve_run_at"):
        text = _text(op_client.post(ADD, _form(job_key="k-2", job_key_mode=mode)))
        assert (
            f"job {locked.id} is locked by a worker: it loses its key and a new job is created"
            in text.lower()
        )
        assert "pool-abc" in text
    text = _text(op_client.post(ADD, _form(job_key="k-2", job_key_mode="unsafe_dedupe")))
    assert f"unsafe_dedupe: job {locked.id} is returned unchanged" in text
    assert "A worker holds it right now" in text


def test_add_job__keyed_preview_of_a_failed_job(op_client, jobs):
    failed = jobs.failed(job_key="k-3")
    text = _text(op_client.post(ADD, _form(job_key="k-3")))
    assert (
        f"Job {failed.id} has failed permanently: it loses its key and a new job is created" in text
    )


@pytest.mark.parametrize("mode", ["replace", "preserve_run_at", "unsafe_dedupe"])
def test_add_job__keyed_confirm_does_what_the_preview_said(op_client, keyed, mode):
    run_at = (timezone.now() + timedelta(days=9)).replace(second=0, microsecond=0)
    data = _form(payload='{"v": "new"}', run_at=_local(run_at), job_key="k-1", job_key_mode=mode)
    _, confirm = _preview_and_confirm(op_client, ADD, data)
    assert confirm.status_code == 302
    (job,) = _jobs()
    assert job.id == keyed.id and job.revision == 5
    (entry,) = _audit()
    if mode == "unsafe_dedupe":
        assert job.payload == {"v": "old"} and job.run_at == keyed.run_at
        assert entry.summary == (
            f"unsafe_dedupe: job {job.id} (send_email) already holds the key “k-1” and was "
            "returned unchanged (revision 5)"
        )
    else:
        assert job.payload == {"v": "new"}
        assert job.run_at == (keyed.run_at if mode == "preserve_run_at" else run_at)
        assert entry.summary == f"replaced job {job.id} (send_email) by its key “k-1” (revision 5)"
        assert entry.before_image[0]["payload"] == {"v": "old"}
        assert entry.before_image[0]["revision"] == 4


def test_add_job__keyed_confirm_on_a_locked_job_adds_a_new_one(op_client, jobs):
    locked = jobs.locked(job_key="k-2")
    _, confirm = _preview_and_confirm(op_client, ADD, _form(job_key="k-2"))
    old, new = _jobs()
    assert old.id == locked.id and old.key is None and old.attempts == old.max_attempts
    assert new.key == "k-2" and confirm["Location"].endswith(f"/jobs/{new.id}/")
    assert _audit()[0].summary == (
        f"added job {new.id} (send_email); job {old.id}, locked or failed, gave up the key “k-2”"
    )


# -- the confirmation token -------------------------------------------------------------------


def test_add_job__replayed_confirmation_does_nothing(op_client):
    preview = op_client.post(ADD, _form(payload='{"once": true}'))
    confirmation = {**_hidden(preview), "confirm": "1"}
    first = op_client.post(ADD, confirmation)
    (job,) = _jobs()
    again = op_client.post(ADD, confirmation, follow=True)
    assert again.redirect_chain[-1][0] == reverse("worker_admin:job_detail", args=[job.id])
    text = _text(again)
    assert "Already done: this confirmation was used at" in text
    assert f"(added job {job.id} (send_email)). Nothing was added again." in text
    assert first.status_code == 302
    assert _jobs() == [job]
    assert [(e.action, e.outcome) for e in _audit()] == [("add_job", "done")]


def test_add_job__confirmation_from_another_session_is_refused(op_client, op):
    preview = op_client.post(ADD, _form())
    other = Client()
    other.force_login(op)  # the same user, another browser: the nonce is not in its session
    response = other.post(ADD, {**_hidden(preview), "confirm": "1"})
    assert response.status_code == 200
    assert "This confirmation is no longer valid" in _text(response)
    assert not _jobs()
    assert [(e.action, e.outcome) for e in _audit()] == [("add_job", "rejected")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("payload", '{"to": "eve@example.com"}', "differ from the preview"),
        ("priority", "-100", "differ from the preview"),
        ("identifier", "charge_card", "differ from the preview"),
        ("job_key_mode", "unsafe_dedupe", "differ from the preview"),
        ("token", "forged", "The confirmation token is missing or damaged"),
        ("max_attempts", "0", "Max attempts must be between 1 and 32767"),
    ],
)
def test_add_job__tampered_hidden_fields_are_rejected(op_client, field, value, message):
    preview = op_client.post(ADD, _form(payload='{"to": "ada@example.com"}', job_key="k"))
    response = op_client.post(ADD, {**_hidden(preview), field: value, "confirm": "1"})
    assert response.status_code == 200
    assert message in _text(response)
    assert not _jobs()
    (entry,) = _audit()
    assert (entry.action, entry.outcome, entry.parameters["step"]) == (
        "add_job",
        "rejected",
        "confirm",
    )
    assert message in entry.error


def test_add_job__token_is_bound_to_its_view(op_client):
    preview = op_client.post(BATCH, {"items": '[{"identifier": "a"}]'})
    hidden = _hidden(preview)
    response = op_client.post(ADD, {**_form(), "token": hidden["token"], "confirm": "1"})
    assert "The confirmation token is missing or damaged" in _text(response)
    assert not _jobs()


def test_add_job__htmx_confirmation_answers_with_hx_redirect(op_client):
    preview = op_client.post(ADD, _form())
    response = op_client.post(ADD, {**_hidden(preview), "confirm": "1"}, HTTP_HX_REQUEST="true")
    (job,) = _jobs()
    assert response.status_code == 204
    assert response["HX-Redirect"] == reverse("worker_admin:job_detail", args=[job.id])
    assert json.loads(response["HX-Trigger"]) == {"jobs-added": {"ids": [job.id]}}


def test_add_job__database_refusal_is_reported_and_audited_as_failed(op_client, monkeypatch):
    from django.db import DatabaseError

    from worker_admin.utils import WorkerUtils

    def refuse(*args, **kwargs):
        raise DatabaseError("permission denied for function add_job\nDETAIL: whatever")

    preview = op_client.post(ADD, _form())
    monkeypatch.setattr(WorkerUtils, "add_raw_job", refuse)
    response = op_client.post(ADD, {**_hidden(preview), "confirm": "1"})
    message = (
        "The database refused the job: permission denied for function add_job. Nothing was added."
    )
    assert response.status_code == 200 and message in _text(response)
    assert not _jobs()
    (entry,) = _audit()
    assert (entry.action, entry.outcome, entry.error) == ("add_job", "failed", message)


# -- bad input --------------------------------------------------------------------------------


def _years_from_now(years: int) -> str:
    return _local(timezone.now() + timedelta(days=round(365.25 * years)))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"payload": '{"a": 1,\n  "b": }'},
            "The payload is not valid JSON: Expecting value at line 2, column 8.",
        ),
        ({"payload": '{"a": NaN}'}, "NaN is not JSON"),
        (
            {"payload": json.dumps({"blob": "x" * PAYLOAD_MAX_BYTES})},
            "The payload is 1,048,588 bytes as stored; the limit is 1,048,576 bytes (1.0 MB).",
        ),
        ({"max_attempts": -1}, "Max attempts must be between 1 and 32767"),
        ({"max_attempts": 0}, "Max attempts must be between 1 and 32767 (how many times a worker"),
        (
            {"priority": 40000},
            "Priority must be between -32768 and 32767 (lower runs first); got 40000.",
        ),
        ({"job_key": "   "}, "The job key is only spaces"),
        ({"job_key": "k", "job_key_mode": "clobber"}, "Unknown key mode clobber: choose replace"),
        ({"job_key_mode": "preserve_run_at"}, "only applies to a job with a key"),
        (
            {"run_at": _years_from_now(-5)},
            "is about 5 years in the past; it may be at most one year back",
        ),
        (
            {"run_at": _years_from_now(50)},
            "is about 50 years in the future; it may be at most ten years",
        ),
        ({"run_at": "tomorrow"}, "Run at must be a date and time"),
        ({"identifier": "x" * 129}, "The task identifier is 129 characters; the limit is 128."),
        ({"identifier": "   "}, "Give the task identifier"),
        ({"flags": "a,,b"}, "Flag 2 of 3 is empty: remove the extra comma."),
        ({"queue": "q" * 129}, "The queue name is 129 characters; the limit is 128."),
        ({"job_key": "k" * 513}, "The job key is 513 characters; the limit is 512."),
        ({"payload": '"\\ud800"'}, "unpaired surrogate"),
    ],
)
def test_add_job__bad_input_is_refused_and_audited(op_client, values, message):
    response = op_client.post(ADD, _form(**values))
    assert response.status_code == 200
    text = _text(response)
    assert "Nothing was added." in text and message in text
    assert 'name="token"' not in _html(response)  # the form again, not a preview
    assert not _jobs()
    (entry,) = _audit()
    assert (entry.action, entry.outcome, entry.parameters["step"]) == (
        "add_job",
        "rejected",
        "preview",
    )
    assert message in entry.error


def test_add_job__html_and_sql_text_is_stored_verbatim_and_shown_escaped(op_client):
    identifier = "<script>alert('id')</script>"
    payload = {
        "sql": "'; DROP TABLE graphile_worker._private_jobs; --",
        "h": "<img src=x onerror=alert(1)>",
    }
    data = _form(
        identifier=identifier,
        payload=json.dumps(payload),
        queue='"><b>queue</b>',
        job_key="<i>k</i>' OR 1=1 --",
        flags="<u>flag</u>",
    )
    preview, confirm = _preview_and_confirm(op_client, ADD, data)
    raw = preview.content.decode()
    assert "<script>alert(" not in raw and "<img src=x" not in raw and "<b>queue</b>" not in raw
    assert "&lt;script&gt;alert(&#x27;id&#x27;)&lt;/script&gt;" in raw
    assert confirm.status_code == 302
    (job,) = _jobs()
    assert job.task.identifier == identifier
    assert job.payload == payload
    assert job.job_queue.queue_name == '"><b>queue</b>'
    assert job.key == "<i>k</i>' OR 1=1 --"
    assert job.flags == {"<u>flag</u>": True}
    detail = op_client.get(confirm["Location"]).content.decode()
    assert "<script>alert(" not in detail and "<img src=x" not in detail and "<u>flag" not in detail
    assert "Added job" in detail


def test_add_job__nul_characters_never_break_the_audit_log(op_client):
    response = op_client.post(ADD, _form(identifier="a\x00b", job_key="k", job_key_mode="x\x00"))
    assert response.status_code == 200 and "Nothing was added." in _text(response)
    assert [(e.outcome, e.parameters["identifier"]) for e in _audit()] == [("rejected", "a\ufffdb")]
    # A payload may hold \u0000 (the json column takes it); the audit entry keeps only its hash.
    _, confirm = _preview_and_confirm(op_client, ADD, _form(payload='{"s": "a\\u0000b"}'))
    assert confirm.status_code == 302
    (job,) = _jobs()
    assert job.payload == {"s": "a\x00b"}
    entry = _audit()[-1]
    assert entry.outcome == "done" and entry.parameters["payload"] is None
    assert len(entry.parameters["payload_sha256"]) == 64


# -- batches ----------------------------------------------------------------------------------


def test_add_batch__get_shows_the_form(op_client):
    response = op_client.get(BATCH)
    text = _html(response)
    assert response.status_code == 200 and "Add jobs from JSON" in text
    assert 'name="items"' in text and 'name="file"' in text and "10,000 jobs" in text


def test_add_batch__pasted_preview_then_confirm(op_client, op, jobs):
    existing = jobs.add("report", {"v": "old"}, job_key="daily")
    run_at = (timezone.now() + timedelta(hours=5)).replace(microsecond=0)
    items = [
        {"identifier": "report", "payload": {"n": 1}, "queue_name": "reports", "priority": 3},
        {
            "identifier": "report",
            "payload": [1, 2],
            "run_at": run_at.isoformat(),
            "max_attempts": 3,
            "flags": ["a", "b"],
            "job_key": "daily",
        },
        {"identifier": "report", "job_key": "weekly", "job_key_mode": "replace"},
    ]
    preview = op_client.post(BATCH, {"items": json.dumps(items, indent=2)})
    text = _text(preview)
    assert preview.status_code == 200
    assert "Preview: add 3 jobs" in text and "3 from pasted text" in text
    assert "2 jobs with a key; 1 of those key already exists" in text
    assert "1 existing job will be replaced" in text
    assert "Add 3 jobs" in text
    assert _jobs() == [existing] and not _audit()

    confirm = op_client.post(BATCH, {**_hidden(preview), "confirm": "1"})
    assert confirm.status_code == 302
    assert confirm["Location"] == reverse("worker_admin:jobs") + "?sort=newest&task=report"
    replaced, first, third = _jobs()
    assert replaced.id == existing.id
    assert (replaced.payload, replaced.revision, replaced.run_at) == ([1, 2], 1, run_at)
    assert (replaced.max_attempts, replaced.flags) == (3, {"a": True, "b": True})
    assert (first.payload, first.job_queue.queue_name, first.priority) == ({"n": 1}, "reports", 3)
    assert (third.key, third.payload, third.max_attempts) == ("weekly", {}, 25)
    (entry,) = _audit()
    assert (entry.action, entry.outcome, entry.actor) == ("add_jobs", "done", op)
    assert sorted(entry.changed_ids) == [existing.id, first.id, third.id]
    assert entry.summary == "added 2 jobs; replaced 1 keyed job"
    assert entry.parameters["count"] == 3 and entry.parameters["source"] == "pasted text"
    assert entry.parameters["items"][1]["job_key"] == "daily"
    assert entry.before_image[0]["payload"] == {"v": "old"}
    listing = op_client.get(confirm["Location"])
    assert "Added 2 jobs; replaced 1 keyed job." in _text(listing)


def test_add_batch__uploaded_file(op_client):
    items = [{"identifier": "resize_image", "payload": {"n": n}} for n in range(120)]
    upload = SimpleUploadedFile(
        "images.json", json.dumps(items).encode("utf-8"), content_type="application/json"
    )
    preview = op_client.post(BATCH, {"file": upload})
    text = _text(preview)
    assert "Preview: add 120 jobs" in text and "from file images.json" in text
    assert "The first 20 of 120 jobs" in text and "… and 100 more, all checked." in text
    confirm = op_client.post(BATCH, {**_hidden(preview), "confirm": "1"})
    assert confirm.status_code == 302
    added = _jobs()
    assert [job.payload for job in added] == [{"n": n} for n in range(120)]
    assert {job.task.identifier for job in added} == {"resize_image"}
    (entry,) = _audit()
    assert entry.summary == "added 120 jobs"
    assert entry.parameters["source"] == "file images.json"
    assert entry.changed_ids == [job.id for job in added]


def test_add_batch__replayed_confirmation_does_nothing(op_client):
    preview = op_client.post(BATCH, {"items": '[{"identifier": "a"}, {"identifier": "b"}]'})
    confirmation = {**_hidden(preview), "confirm": "1"}
    op_client.post(BATCH, confirmation)
    again = op_client.post(BATCH, confirmation, follow=True)
    assert "Already done" in _text(again) and "(added 2 jobs)" in _text(again)
    assert len(_jobs()) == 2 and len(_audit()) == 1


def test_add_batch__tampered_items_are_rejected(op_client):
    preview = op_client.post(BATCH, {"items": '[{"identifier": "a", "priority": 1}]'})
    hidden = _hidden(preview)
    tampered = hidden["items"].replace('"priority":1', '"priority":-30000')
    assert tampered != hidden["items"]
    response = op_client.post(BATCH, {**hidden, "items": tampered, "confirm": "1"})
    assert "differ from the preview" in _text(response)
    assert not _jobs()
    assert [(e.action, e.outcome) for e in _audit()] == [("add_jobs", "rejected")]


def test_add_batch__preserve_run_at_and_detached_keys_are_announced(op_client, jobs):
    jobs.add("a", job_key="ready-key")
    jobs.locked(job_key="locked-key")
    items = [
        {"identifier": "a", "job_key": "ready-key", "job_key_mode": "preserve_run_at"},
        {"identifier": "a", "job_key": "locked-key"},
    ]
    text = _text(op_client.post(BATCH, {"items": json.dumps(items)}))
    assert "2 jobs with a key; 2 of those keys already exist" in text
    assert "1 existing job will be replaced" in text and "run at kept" in text
    assert "1 job holding its key is locked by a worker or failed" in text
    assert "Item 0 asks for preserve_run_at: in a batch it applies to every keyed job" in text


def _batch_of(count: int) -> str:
    return json.dumps([{"identifier": "t", "payload": {"i": i}} for i in range(count)])


def _with_bad_item(**bad) -> str:
    items = [{"identifier": "t", "payload": {"i": i}} for i in range(20)]
    items[12].update(bad)
    return json.dumps(items)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_batch_of(10_001), "The batch has 10,001 items; the limit is 10,000 per batch."),
        (
            _with_bad_item(priority=40000),
            "item 12: priority must be between -32768 and 32767; got 40000.",
        ),
        (
            _with_bad_item(max_attempts=0),
            "item 12: max_attempts must be between 1 and 32767; got 0.",
        ),
        (
            _with_bad_item(job_key="k", job_key_mode="unsafe_dedupe"),
            "item 12: job_key_mode unsafe_dedupe is not allowed in a batch",
        ),
        (
            _with_bad_item(job_key_mode="bogus", job_key="k"),
            "item 12: unknown job_key_mode 'bogus'",
        ),
        (_with_bad_item(job_key=""), "item 12: job_key must not be empty"),
        (
            _with_bad_item(run_at="2030-01-01T10:00:00"),
            "item 12: run_at '2030-01-01T10:00:00' has no UTC offset",
        ),
        (
            _with_bad_item(run_at="2001-01-01T10:00:00Z"),
            "item 12: run_at 2001-01-01 10:00 UTC is about",
        ),
        (
            _with_bad_item(identifier="x" * 129),
            "item 12: identifier is 129 characters; the limit is 128.",
        ),
        (_with_bad_item(queue="q"), "item 12: unknown field 'queue'"),
        (_with_bad_item(flags="a,b"), "item 12: flags must be an array of strings"),
        (
            _with_bad_item(payload={"x": "y" * PAYLOAD_MAX_BYTES}),
            "item 12: payload is 1,048,585 bytes as stored; the limit is 1,048,576",
        ),
        (
            '[{"identifier": "a", "job_key": "k"}, {"identifier": "b", "job_key": "k"}]',
            "item 1: job_key 'k' is also the key of item 0",
        ),
        (
            '[{"identifier": "a"},\n {"identifier": }]',
            "The batch is not valid JSON: Expecting value at line 2, column 17.",
        ),
        ('{"identifier": "a"}', "The batch must be a JSON array of job objects, not an object."),
        ("[]", "The batch is empty"),
        ("", "Paste a JSON array of jobs, or choose a .json file."),
        ("[1]", 'item 0: must be an object like {"identifier": "…"}, not a number.'),
    ],
)
def test_add_batch__bad_input_refuses_the_whole_batch(op_client, text, message):
    response = op_client.post(BATCH, {"items": text})
    assert response.status_code == 200
    page = _text(response)
    assert "Nothing was added." in page and message in page
    assert 'name="token"' not in _html(response)
    assert not _jobs()
    (entry,) = _audit()
    assert (entry.action, entry.outcome, entry.parameters["step"]) == (
        "add_jobs",
        "rejected",
        "preview",
    )
    assert message in entry.error


def test_add_batch__one_bad_item_names_it_and_counts_the_rest(op_client):
    items = [{"identifier": "t", "priority": 40000 if i in (3, 12) else 0} for i in range(30)]
    text = _text(op_client.post(BATCH, {"items": json.dumps(items)}))
    assert "2 of the 30 items are invalid, so the batch was refused as a whole" in text
    assert "item 3: priority" in text and "item 12: priority" in text
    assert not _jobs()


def test_add_batch__too_big_to_confirm_is_refused_at_the_preview(op_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    items = [{"identifier": "t", "payload": {"s": "x" * 1000}} for _ in range(60)]
    upload = SimpleUploadedFile("big.json", json.dumps(items).encode())
    response = op_client.post(BATCH, {"file": upload})
    text = _text(response)
    assert (
        "but the server accepts at most 64.0 KB per request (DATA_UPLOAD_MAX_MEMORY_SIZE)" in text
    )
    assert 'name="token"' not in _html(response)
    assert not _jobs()
    assert [(e.action, e.outcome) for e in _audit()] == [("add_jobs", "rejected")]


def test_add_batch__both_paste_and_file_is_refused(op_client):
    upload = SimpleUploadedFile("a.json", b'[{"identifier": "a"}]')
    response = op_client.post(BATCH, {"items": '[{"identifier": "b"}]', "file": upload})
    assert "Paste a batch or choose a file, not both." in _text(response)
    assert not _jobs()


def test_add_batch__file_that_is_not_utf8(op_client):
    upload = SimpleUploadedFile("a.json", b'[{"identifier": "\xff"}]')
    response = op_client.post(BATCH, {"file": upload})
    assert "The file a.json is not UTF-8 text." in _text(response)
    assert [(e.action, e.outcome) for e in _audit()] == [("add_jobs", "rejected")]


# -- permissions ------------------------------------------------------------------------------


def _every_request(client, form_preview=None):
    preview = {"identifier": "x", "payload": "{}"}
    yield client.get(ADD)
    yield client.post(ADD, preview)
    yield client.post(ADD, {**(form_preview or preview), "confirm": "1", "token": "t"})
    yield client.get(BATCH)
    yield client.post(BATCH, {"items": '[{"identifier": "x"}]'})
    yield client.post(BATCH, {"items": '[{"identifier": "x"}]', "confirm": "1", "token": "t"})


def test_add_job__viewer_gets_403_and_nothing_is_written(console, operator):
    operator.groups.add(Group.objects.get(name="viewer"))
    for response in _every_request(console):
        assert response.status_code == 403
        text = _text(response)
        assert "You cannot add jobs here" in text
        assert "Adding jobs needs the operator role" in text and "viewer role" in text
    assert not _jobs()
    # Each refused POST is on the record as a rejected attempt; GETs are not.
    assert [e.outcome for e in _audit()] == ["rejected"] * 4


def test_add_job__read_only_forbids_even_a_superuser(client, django_user_model, settings, op):
    admin = django_user_model.objects.create_superuser("root", password="pw-123456789")
    client.force_login(admin)
    preview = client.post(ADD, {"identifier": "x", "payload": "{}"})
    assert preview.status_code == 200  # writable: a preview with a live token
    hidden = _hidden(preview)
    settings.READ_ONLY = True
    for response in _every_request(client, hidden):
        assert response.status_code == 403
        assert "This console is read-only (READ_ONLY is set on the server)" in _text(response)
    assert not _jobs()
    assert [e.outcome for e in _audit()] == ["rejected"] * 4


def test_add_job__login_required(client, db):
    for url in (ADD, BATCH):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
