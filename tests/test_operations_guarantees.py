"""The guarantees of worker_admin/operations for job actions, proven against committed data
with real threads (issue 14, points 2, 3 and 7).

Acting once: 12 requests apply one confirmation at the same moment (a barrier releases them
together; each thread has its own database connection), through the page (plain POST and
htmx) and the JSON API. Exactly one acts: one set of "done" entries, the previewed jobs changed
once, every other job's revision untouched; the others are told "already used" (page, with a
link to the audit entry) or 409 (API).

Pinned targets: a bulk action on a filter acts only on the jobs its preview counted; a job that
changed in between is skipped and reported, its change kept.

After an action on one job that deletes it, the page lands where the result is true.
"""

from __future__ import annotations

import html
import re
import threading
from collections import Counter

import pytest
from django.contrib.auth.models import Group
from django.db import connections
from django.test import Client

from tests.test_api import Api, user_with_token
from worker_admin.audit import AuditEntry
from worker_admin.models import Job
from worker_admin.roles import ensure_groups
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

THREADS = 12
URL = "/jobs/actions/"
API_PREVIEW, API_APPLY = "/api/jobs/actions/preview", "/api/jobs/actions/apply"


def _token(response) -> str:
    match = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(1)


def _text(response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode()))


def _all_at_once(send, count: int = THREADS) -> list:
    """`send()` from `count` threads released together; their replies (or exceptions)."""
    barrier = threading.Barrier(count)
    replies: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            replies[index] = send()
        except BaseException as exc:  # checked by the caller
            replies[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a request did not finish"
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies


def _revisions(ids) -> dict[int, int]:
    return dict(Job.objects.filter(id__in=ids).values_list("id", "revision"))


@pytest.fixture
def operator_session(worker_rows, django_user_model):
    ensure_groups()
    user = django_user_model.objects.create_user("racer", password="pw-123456789")
    user.groups.add(Group.objects.get(name="operator"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def five_and_bystanders(worker_rows):
    utils = WorkerUtils()
    targets = [utils.add_raw_job("race_target", {"n": n}, JobSpec(priority=0)).id for n in range(5)]
    bystanders = [utils.add_raw_job("race_other", {"n": n}).id for n in range(3)]
    return targets, bystanders


def _same_session(client: Client) -> Client:
    twin = Client()
    twin.cookies = client.cookies
    return twin


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_acting_once__page_confirmation_applied_by_many_requests_acts_once(
    operator_session, five_and_bystanders, htmx
):
    targets, bystanders = five_and_bystanders
    form = {"action": "reschedule", "scope": "ids", "ids": targets, "has_options": "1"}
    form |= {"priority": "7", "reason": "race"}
    confirm = form | {"token": _token(operator_session.post(URL, form))}
    untouched = _revisions(bystanders)
    headers = {"HX-Request": "true"} if htmx else {}

    replies = _all_at_once(
        lambda: _same_session(operator_session).post(URL, confirm, headers=headers)
    )

    statuses = Counter(r.status_code for r in replies)
    assert statuses == Counter({200 if htmx else 302: 1, 400: THREADS - 1}), statuses
    done = list(AuditEntry.objects.filter(action="reschedule", outcome="done"))
    assert len(done) == 1 and sorted(done[0].changed_ids) == sorted(targets)
    refused = [r for r in replies if r.status_code == 400]
    for reply in refused:
        assert "already used" in _text(reply) and f"Audit entry #{done[0].pk}" in _text(reply)
        assert "/audit/?action=reschedule" in reply.content.decode()
    assert set(Job.objects.filter(id__in=targets).values_list("priority", flat=True)) == {7}
    assert len(set(Job.objects.filter(id__in=targets).values_list("updated_at", flat=True))) == 1
    assert _revisions(bystanders) == untouched


def test_acting_once__api_fingerprint_applied_by_many_requests_acts_once(
    five_and_bystanders, django_user_model
):
    targets, bystanders = five_and_bystanders
    ensure_groups()
    _user, secret = user_with_token(django_user_model, "operator", "racer_api")
    body = {"action": "reschedule", "ids": targets, "priority": 7}
    preview = Api(Client(), secret).post(API_PREVIEW, body)
    assert preview.status_code == 200, preview.content
    apply = body | {"fingerprint": preview.json()["fingerprint"]}
    untouched = _revisions(bystanders)

    replies = _all_at_once(lambda: Api(Client(), secret).post(API_APPLY, apply))

    statuses = Counter(r.status_code for r in replies)
    assert statuses == Counter({200: 1, 409: THREADS - 1}), statuses
    done = list(AuditEntry.objects.filter(action="reschedule", outcome="done"))
    assert len(done) == 1 and sorted(done[0].changed_ids) == sorted(targets)
    for reply in replies:
        if reply.status_code == 409:
            assert "already used" in reply.json()["detail"]
            assert reply.json()["audit_entry_id"] == done[0].pk
    assert len(set(Job.objects.filter(id__in=targets).values_list("updated_at", flat=True))) == 1
    assert _revisions(bystanders) == untouched


def test_acting_once__one_confirmation_from_page_and_api_together_acts_once(
    five_and_bystanders, django_user_model
):
    """The claim is in the database, not in a face: the same user's confirmation sent through
    the page and the API at once (6 + 6 requests) acts once."""
    targets, bystanders = five_and_bystanders
    ensure_groups()
    user, secret = user_with_token(django_user_model, "operator", "racer_both")
    page = Client()
    page.force_login(user)
    form = {"action": "run_now", "scope": "ids", "ids": targets}
    token = _token(page.post(URL, form))
    untouched = _revisions(bystanders)
    calls = iter(range(THREADS))

    def send():
        if next(calls) % 2:
            return _same_session(page).post(URL, form | {"token": token})
        return Api(Client(), secret).post(API_APPLY, {**form_api(targets), "fingerprint": token})

    replies = _all_at_once(send)

    acted = [r for r in replies if r.status_code in (200, 302)]
    assert len(acted) == 1, Counter(r.status_code for r in replies)
    assert sorted(r.status_code for r in replies if r not in acted) in (
        [400] * 5 + [409] * 6,
        [400] * 6 + [409] * 5,
    )
    done = list(AuditEntry.objects.filter(action="run_now", outcome="done"))
    assert len(done) == 1 and sorted(done[0].changed_ids) == sorted(targets)
    assert _revisions(bystanders) == untouched


def form_api(targets: list[int]) -> dict:
    return {"action": "run_now", "ids": targets}


def test_acting_once__api_add_applied_by_many_requests_adds_once(worker_rows, django_user_model):
    ensure_groups()
    _user, secret = user_with_token(django_user_model, "operator", "racer_add")
    body = {"identifier": "race_add", "payload": {"n": 1}}
    preview = Api(Client(), secret).post("/api/jobs/add/preview", body)
    apply = body | {"fingerprint": preview.json()["fingerprint"]}

    replies = _all_at_once(lambda: Api(Client(), secret).post("/api/jobs/add/apply", apply))

    assert Counter(r.status_code for r in replies) == Counter({201: 1, 409: THREADS - 1})
    assert Job.objects.filter(task__identifier="race_add").count() == 1
    assert AuditEntry.objects.filter(action="add_job", outcome="done").count() == 1


def test_acting_once__page_batch_applied_by_many_requests_adds_once(operator_session):
    preview = operator_session.post(
        "/jobs/add/batch/",
        {"items": '[{"identifier": "race_batch"}, {"identifier": "race_batch"}]'},
    )
    hidden = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', preview.content.decode())
    )
    confirm = {k: html.unescape(v) for k, v in hidden.items() if k != "csrfmiddlewaretoken"}
    confirm["confirm"] = "1"

    replies = _all_at_once(
        lambda: _same_session(operator_session).post("/jobs/add/batch/", confirm, follow=True)
    )

    texts = [_text(r) for r in replies]
    assert sum("Added 2 jobs" in t for t in texts) == 1
    assert sum("Already done" in t for t in texts) == THREADS - 1
    assert Job.objects.filter(task__identifier="race_batch").count() == 2
    assert AuditEntry.objects.filter(action="add_jobs", outcome="done").count() == 1


def test_pinned_targets__jobs_that_match_after_the_preview_are_left_alone(operator_session):
    utils = WorkerUtils()
    pinned = [job.id for job in utils.add_raw_jobs([RawJobSpec("pin_me", {}) for _ in range(3)])]
    form = {"action": "complete", "scope": "filter", "reason": "pinned"}
    preview = operator_session.post(URL + "?task=pin_me", form)
    assert "Complete: 3 jobs" in _text(preview)
    late = [job.id for job in utils.add_raw_jobs([RawJobSpec("pin_me", {}) for _ in range(50)])]

    done = operator_session.post(
        URL + "?task=pin_me", form | {"token": _token(preview)}, follow=True
    )

    shown = [str(m) for m in done.context["messages"]]
    assert shown == [
        "Complete: changed 3 of 3; 50 that started to match the filter after the preview left "
        "alone."
    ]
    assert not Job.objects.filter(id__in=pinned).exists()
    assert Job.objects.filter(id__in=late).count() == 50
    entry = AuditEntry.objects.get(action="complete", outcome="done")
    assert sorted(entry.changed_ids) == sorted(pinned)


def test_pinned_targets__a_job_changed_after_the_preview_is_skipped_and_kept(operator_session):
    utils = WorkerUtils()
    jobs = [utils.add_raw_job("pin_change", {"n": n}) for n in range(3)]
    form = {"action": "run_now", "scope": "filter"}
    preview = operator_session.post(URL + "?task=pin_change", form)
    changed = utils.reschedule_jobs([jobs[0].id], _priority(-5)).changed[0]

    done = operator_session.post(
        URL + "?task=pin_change", form | {"token": _token(preview)}, follow=True
    )

    shown = [str(m) for m in done.context["messages"]]
    assert shown == ["Run now: changed 2 of 3; 1 changed since the preview."]
    kept = Job.objects.get(id=jobs[0].id)
    assert (kept.priority, kept.revision, kept.run_at) == (-5, changed.revision, changed.run_at)
    entry = AuditEntry.objects.get(action="run_now", outcome="done")
    assert entry.parameters["changed_since_preview"] == [jobs[0].id]
    assert sorted(entry.changed_ids) == sorted(j.id for j in jobs[1:])


@pytest.mark.parametrize(
    "column, value",
    [
        ("run_at", "now() + interval '1 day'"),
        ("priority", "7"),
        ("max_attempts", "9"),
        ("key", "'set-behind-our-back'"),
    ],
)
def test_pinned_targets__a_raw_update_that_keeps_the_revision_is_caught_too(
    operator_session, column, value
):
    """The pin's digest (computed in SQL, operations/job_actions/pins.py) covers the values a
    raw UPDATE moves without touching revision or updated_at."""
    jobs = [WorkerUtils().add_raw_job("pin_raw", {"n": n}) for n in range(2)]
    form = {"action": "fail", "scope": "filter", "reason": "stop"}
    preview = operator_session.post(URL + "?task=pin_raw", form)
    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"UPDATE graphile_worker._private_jobs SET {column} = {value} WHERE id = %s",
            [jobs[0].id],
        )

    done = operator_session.post(
        URL + "?task=pin_raw", form | {"token": _token(preview)}, follow=True
    )

    assert [str(m) for m in done.context["messages"]] == [
        "Permanently fail: changed 1 of 2; 1 changed since the preview."
    ]
    assert Job.objects.get(id=jobs[0].id).attempts == 0


def _priority(value: int):
    from worker_admin.utils import RescheduleJobOptions

    return RescheduleJobOptions(priority=value)


@pytest.mark.parametrize("action", ["complete", "remove"])
def test_landing__an_action_that_deletes_the_job_ends_on_its_audit_entry(operator_session, action):
    job = WorkerUtils().add_raw_job("land", {}, JobSpec(job_key="land-key"))
    form = {"action": action, "scope": "ids", "ids": [job.id], "reason": "done by hand"}
    preview = operator_session.post(URL, form)

    done = operator_session.post(URL, form | {"token": _token(preview)}, follow=True)

    assert done.status_code == 200
    assert done.redirect_chain[-1][0] == f"/audit/?job={job.id}&action={action}"
    entry = AuditEntry.objects.get(action=action, outcome="done")
    assert entry.changed_ids == [job.id] and "changed 1 of 1" in _text(done)
    assert not Job.objects.filter(id=job.id).exists()
