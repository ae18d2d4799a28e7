"""Undo through worker_admin/operations/undo: a preview that pins what it shows, an apply that
acts once however many requests send it, and jobs that changed in between left alone.

Against committed data with real threads (each with its own database connection), released
together by a barrier, as in tests/test_operations_guarantees.py."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.test_operations_guarantees import (
    THREADS,
    URL,
    _all_at_once,
    _same_session,
    _text,
    _token,
    operator_session,  # noqa: F401 (a fixture)
)
from worker_admin.audit import AuditEntry
from worker_admin.models import Job
from worker_admin.operations import undo
from worker_admin.operations.errors import AlreadyUsed, NotFound, Refused
from worker_admin.utils import JobSpec, RescheduleJobOptions, WorkerUtils


@pytest.fixture
def rescheduled(worker_rows, operator_session):  # noqa: F811
    """Four jobs at priority 1, rescheduled to priority 9 through the page, and its entry."""
    utils = WorkerUtils()
    later = timezone.now() + timedelta(hours=2)
    ids = [
        utils.add_raw_job("undo_target", {"n": n}, JobSpec(priority=1, run_at=later)).id
        for n in range(4)
    ]
    form = {"action": "reschedule", "scope": "ids", "ids": ids, "has_options": "1"}
    form |= {"priority": "9", "reason": "to be undone"}
    operator_session.post(URL, form | {"token": _token(operator_session.post(URL, form))})
    entry = AuditEntry.objects.get(action="reschedule", outcome="done")
    return ids, entry


def _priorities(ids) -> list[int]:
    return [Job.objects.get(id=i).priority for i in ids]


def test_undo_preview__shows_each_job_now_and_after(operator_session, rescheduled):  # noqa: F811
    ids, entry = rescheduled
    page = operator_session.post(f"/audit/{entry.pk}/undo/")
    text = " ".join(_text(page).split())
    assert page.status_code == 200
    assert "priority: 9 → 1" in text
    assert f"Undo #{entry.pk}: restore 4 jobs" in text
    assert _priorities(ids) == [9, 9, 9, 9]  # a preview changes nothing


def test_undo_apply__many_requests_at_once_act_once(operator_session, rescheduled):  # noqa: F811
    ids, entry = rescheduled
    token = _token(operator_session.post(f"/audit/{entry.pk}/undo/"))

    replies = _all_at_once(
        lambda: _same_session(operator_session).post(f"/audit/{entry.pk}/undo/", {"token": token})
    )

    statuses = Counter(r.status_code for r in replies)
    assert statuses == Counter({302: 1, 400: THREADS - 1}), statuses
    done = list(AuditEntry.objects.filter(action="undo_reschedule", outcome="done"))
    assert len(done) == 1 and sorted(done[0].changed_ids) == sorted(ids)
    assert _priorities(ids) == [1, 1, 1, 1]
    revisions_after_one_undo = {j.id: j.revision for j in Job.objects.filter(id__in=ids)}
    refused = [r for r in replies if r.status_code == 400]
    assert all("already used" in _text(r) for r in refused)
    assert revisions_after_one_undo == {j.id: j.revision for j in Job.objects.filter(id__in=ids)}


def test_undo_apply__a_job_changed_since_the_preview_is_skipped_and_reported(rescheduled):
    ids, entry = rescheduled
    actor = entry.actor
    shown = undo.preview(actor, entry.pk)
    # Someone else reschedules one of the jobs after the preview.
    WorkerUtils().reschedule_jobs([ids[0]], RescheduleJobOptions(priority=-5))

    result = undo.apply(actor, shown.token)

    assert result.stale == [ids[0]]
    assert sorted(result.changed) == sorted(ids[1:])
    assert "1 changed since the preview" in result.summary
    assert _priorities(ids) == [-5, 1, 1, 1]  # the later change is kept
    with pytest.raises(AlreadyUsed):
        undo.apply(actor, shown.token)


def test_undo__two_previews_of_one_entry_still_undo_once(rescheduled):
    _ids, entry = rescheduled
    actor = entry.actor
    first, second = undo.preview(actor, entry.pk), undo.preview(actor, entry.pk)
    undo.apply(actor, first.token)
    with pytest.raises(Refused, match="already undone"):
        undo.apply(actor, second.token)
    assert AuditEntry.objects.filter(action="undo_reschedule", outcome="done").count() == 1


def test_undo__unknown_entry_and_other_users_token(rescheduled, django_user_model):
    _ids, entry = rescheduled
    with pytest.raises(NotFound):
        undo.preview(entry.actor, 987654321)
    shown = undo.preview(entry.actor, entry.pk)
    intruder = django_user_model.objects.create_user("intruder", password="pw-123456789")
    with pytest.raises(Refused, match="another user"):
        undo.apply(intruder, shown.token)
