"""Job actions through the console: preview, confirm, audit, roles, READ_ONLY, bad input."""

import html
import re
from datetime import UTC

import pytest

from worker_admin.audit import AuditEntry
from worker_admin.models import Job

URL = "/jobs/actions/"


@pytest.fixture
def operator_client(login_as):
    return login_as("operator", "op")


@pytest.fixture
def viewer_client(login_as):
    return login_as("viewer", "viewer1")


def _token(response) -> str:
    match = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert match, "the preview carries a confirmation token"
    return match.group(1)


def _text(response) -> str:
    without_tags = re.sub(r"<[^>]+>", "", response.content.decode())
    return html.unescape(re.sub(r"\s+", " ", without_tags))


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_action__complete_previews_then_confirms_with_a_reason(operator_client, jobs):
    job = jobs.ready(payload={"to": "a@example.org"})
    preview = operator_client.post(URL, {"action": "complete", "ids": [job.id]})
    assert preview.status_code == 200
    text = _text(preview)
    assert "Complete 1 job?" in text and "completed jobs leave no trace" in text
    assert Job.objects.filter(id=job.id).exists()  # a preview changes nothing

    done = operator_client.post(
        URL,
        {"action": "complete", "ids": [job.id], "token": _token(preview), "reason": "dup order"},
        follow=True,
    )
    assert not Job.objects.filter(id=job.id).exists()
    assert "Complete: changed 1 of 1." in _messages(done)
    entry = AuditEntry.objects.get(action="complete")
    assert (entry.outcome, entry.reason, entry.actor_name) == ("done", "dup order", "op")
    assert entry.changed_ids == [job.id]
    assert entry.before_image[0]["payload"] == {"to": "a@example.org"}


def test_action__destructive_without_reason_is_refused(operator_client, jobs):
    job = jobs.ready()
    preview = operator_client.post(URL, {"action": "fail", "ids": [job.id]})
    response = operator_client.post(
        URL, {"action": "fail", "ids": [job.id], "token": _token(preview), "reason": ""}
    )
    assert response.status_code == 400 and "Give a reason" in _text(response)
    assert Job.objects.get(id=job.id).attempts == 0
    assert AuditEntry.objects.get().outcome == "rejected"


def test_action__a_confirmation_acts_once(operator_client, jobs):
    job = jobs.scheduled()
    preview = operator_client.post(URL, {"action": "run_now", "ids": [job.id]})
    data = {"action": "run_now", "ids": [job.id], "token": _token(preview)}
    assert operator_client.post(URL, data).status_code == 302
    again = operator_client.post(URL, data)
    assert again.status_code == 400 and "already used" in _text(again)
    assert list(AuditEntry.objects.values_list("outcome", flat=True)) == ["rejected", "done"]


def test_action__confirmation_must_match_the_preview(operator_client, jobs):
    a, b = jobs.ready(), jobs.ready()
    preview = operator_client.post(URL, {"action": "complete", "ids": [a.id]})
    forged = operator_client.post(
        URL, {"action": "complete", "ids": [a.id, b.id], "token": _token(preview), "reason": "x"}
    )
    assert forged.status_code == 400 and "differs from what was previewed" in _text(forged)
    assert Job.objects.filter(id__in=[a.id, b.id]).count() == 2


def test_action__locked_jobs_are_skipped_and_reported(operator_client, jobs):
    free, held = jobs.ready(), jobs.locked(age="10 minutes")
    ids = [free.id, held.id]
    preview = operator_client.post(URL, {"action": "fail", "ids": ids})
    assert "1 of these jobs are held by a worker" in _text(preview)
    done = operator_client.post(
        URL,
        {"action": "fail", "ids": ids, "token": _token(preview), "reason": "bad payload"},
        follow=True,
    )
    assert "Permanently fail: changed 1 of 2; 1 skipped: a worker holds them." in _messages(done)
    assert Job.objects.get(id=free.id).last_error == "bad payload"
    assert Job.objects.get(id=held.id).attempts == 1
    entry = AuditEntry.objects.get(action="fail")
    assert (entry.changed_ids, entry.skipped_ids) == ([free.id], [held.id])
    assert entry.before_image[0]["attempts"] == 0


def test_action__bulk_reschedule_on_a_filter(operator_client, jobs):
    mine = [jobs.ready("send_email") for _ in range(3)]
    other = jobs.ready("charge_card")
    first = operator_client.post(
        URL + "?task=send_email", {"action": "reschedule", "scope": "filter"}
    )
    assert first.status_code == 200 and "What to change" in _text(first)
    form = {"action": "reschedule", "scope": "filter", "has_options": "1", "priority": "7"}
    preview = operator_client.post(URL + "?task=send_email", form)
    assert "3 jobs match the filter now" in _text(preview)
    done = operator_client.post(
        URL + "?task=send_email", form | {"token": _token(preview)}, follow=True
    )
    assert "Reschedule: changed 3 of 3." in _messages(done)
    assert sorted(
        Job.objects.filter(id__in=[j.id for j in mine]).values_list("priority", flat=True)
    ) == [7, 7, 7]
    assert Job.objects.get(id=other.id).priority == 0
    assert AuditEntry.objects.get(action="reschedule").filter == {"task": "send_email"}


def test_action__retry_resets_failed_jobs(operator_client, jobs):
    job = jobs.failed()
    preview = operator_client.post(URL, {"action": "retry", "ids": [job.id]})
    operator_client.post(URL, {"action": "retry", "ids": [job.id], "token": _token(preview)})
    job = Job.objects.with_state().get(id=job.id)
    assert (job.attempts, job.state) == (0, "ready")


def test_action__filter_over_the_limit_is_refused(operator_client, jobs, settings):
    settings.BULK_ACTION_LIMIT = 2
    for _ in range(3):
        jobs.ready()
    response = operator_client.post(URL, {"action": "run_now", "scope": "filter"})
    assert response.status_code == 400 and "More than 2 jobs match" in _text(response)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "explode", "ids": ["1"]}, "Unknown action"),
        ({"action": "complete", "ids": ["abc"]}, "is not a job id"),
        ({"action": "complete", "ids": ["-4"]}, "is not a job id"),
        ({"action": "complete"}, "No jobs were chosen"),
        ({"action": "complete", "ids": [str(i) for i in range(1, 50_002)]}, "pick at most 10,000"),
        (
            {"action": "reschedule", "ids": ["1"], "has_options": "1", "priority": "40000"},
            "less than or equal to 32767",
        ),
        ({"action": "reschedule", "ids": ["1"], "has_options": "1"}, "Nothing to change"),
        (
            {
                "action": "reschedule",
                "ids": ["1"],
                "has_options": "1",
                "run_at": "2001-01-01T00:00",
            },
            "in the past",
        ),
        (
            {"action": "reschedule", "ids": ["1"], "has_options": "1", "max_attempts": "0"},
            "greater than or equal to 1",
        ),
        ({"action": "complete", "ids": ["1"], "token": "forged:token"}, "not valid"),
    ],
)
def test_action__bad_input_changes_nothing_and_is_audited(operator_client, jobs, data, message):
    job = jobs.ready()
    before = Job.objects.get(id=job.id)
    response = operator_client.post(URL, data | ({"reason": "r"} if "token" in data else {}))
    assert response.status_code == 400
    assert message in _text(response)
    assert Job.objects.get(id=job.id).updated_at == before.updated_at
    assert AuditEntry.objects.get().outcome == "rejected"


def test_action__viewer_is_forbidden_and_sees_no_buttons(viewer_client, jobs):
    job = jobs.ready()
    page = viewer_client.get(f"/jobs/{job.id}/")
    assert "Complete…" not in page.content.decode()
    assert 'id="bulk-form"' not in viewer_client.get("/jobs/").content.decode()
    forged = viewer_client.post(URL, {"action": "complete", "ids": [job.id], "reason": "x"})
    assert forged.status_code == 403
    assert Job.objects.filter(id=job.id).exists()
    assert AuditEntry.objects.get().outcome == "rejected"


def test_action__read_only_forbids_even_a_superuser(client, django_user_model, jobs, settings):
    settings.READ_ONLY = True
    admin = django_user_model.objects.create_superuser("root", password="pw-123456789")
    client.force_login(admin)
    job = jobs.ready()
    response = client.post(URL, {"action": "complete", "ids": [job.id], "reason": "x"})
    assert response.status_code == 403 and "read-only" in _text(response)
    assert Job.objects.filter(id=job.id).exists()
    assert "Complete…" not in client.get(f"/jobs/{job.id}/").content.decode()


def test_action__get_is_not_allowed(operator_client):
    assert operator_client.get(URL).status_code == 405


def _do(client, data: dict, url: str = URL):
    preview = client.post(url, data)
    return client.post(url, data | {"token": _token(preview)}, follow=True)


def test_undo__reschedule_puts_the_old_values_back(operator_client, jobs):
    job = jobs.scheduled(priority=2)
    before = Job.objects.get(id=job.id)
    form = {"action": "reschedule", "ids": [job.id], "has_options": "1", "priority": "8"}
    _do(operator_client, form)
    assert Job.objects.get(id=job.id).priority == 8
    entry = AuditEntry.objects.get(action="reschedule")
    done = _do(operator_client, {}, f"/audit/{entry.pk}/undo/")
    assert any("restored 1 of 1" in m for m in _messages(done))
    after = Job.objects.get(id=job.id)
    assert (after.priority, after.run_at, after.attempts) == (2, before.run_at, before.attempts)
    undo_entry = AuditEntry.objects.get(action="undo_reschedule")
    assert undo_entry.undo_of_id == entry.pk
    again = operator_client.post(f"/audit/{entry.pk}/undo/")
    assert again.status_code == 400 and "already undone" in _text(again)


def test_undo__complete_re_adds_a_new_job_from_the_saved_payload(operator_client, jobs):
    job = jobs.add("send_email", {"to": "z@example.org"}, queue_name="emails", job_key="k9")
    _do(operator_client, {"action": "complete", "ids": [job.id], "reason": "oops"})
    assert not Job.objects.filter(id=job.id).exists()
    entry = AuditEntry.objects.get(action="complete")
    preview = operator_client.post(f"/audit/{entry.pk}/undo/")
    assert "new job" in _text(preview)
    _do(operator_client, {}, f"/audit/{entry.pk}/undo/")
    readded = Job.objects.select_related("task", "job_queue").get(key="k9")
    assert readded.id != job.id and readded.payload == {"to": "z@example.org"}
    assert (readded.task.identifier, readded.job_queue.queue_name) == ("send_email", "emails")


def test_action__unknown_ids_are_refused_and_audited(operator_client, jobs):
    response = operator_client.post(URL, {"action": "complete", "ids": ["987654321"]})
    assert response.status_code == 400 and "None of the chosen jobs exists" in _text(response)
    assert AuditEntry.objects.get().outcome == "rejected"


def test_action__remove_by_key_deletes_or_detaches(operator_client, jobs):
    free = jobs.ready(job_key="order:1")
    held = jobs.set(
        jobs.ready(job_key="order:2"),
        locked_at="now() - interval '1 minute'",
        locked_by="'graphile_worker_x'",
    )
    for job in (free, held):
        done = _do(operator_client, {"action": "remove", "ids": [job.id], "reason": "cancelled"})
        assert "Remove by key: changed 1 of 1." in _messages(done)
    assert not Job.objects.filter(id=free.id).exists()
    detached = Job.objects.get(id=held.id)
    assert detached.key is None and detached.attempts == detached.max_attempts
    assert AuditEntry.objects.filter(action="remove", outcome="done").count() == 2
    keyless = jobs.ready()
    refused = operator_client.post(URL, {"action": "remove", "ids": [keyless.id]})
    assert refused.status_code == 400 and "one job that has a key" in _text(refused)


def test_action__long_bulk_action_shows_progress_and_continues(operator_client, utils, settings):
    """A step budget of zero seconds stops after every chunk: the page shows progress, and
    each continue does the next chunk until the action is done."""
    from worker_admin.operations.job_actions import applying as actions
    from worker_admin.utils import RawJobSpec

    settings.ACTION_STEP_SECONDS = 0
    actions_chunk = actions.CHUNK
    actions.CHUNK = 10
    try:
        utils.add_raw_jobs([RawJobSpec("bulk", {"i": i}) for i in range(25)])
        form = {"action": "reschedule", "scope": "filter", "has_options": "1", "priority": "4"}
        preview = operator_client.post(URL + "?task=bulk", form)
        step = operator_client.post(URL + "?task=bulk", form | {"token": _token(preview)})
        assert step.status_code == 200 and "in progress" in _text(step)
        assert "So far: changed 10 of 10" in _text(step)
        batch = re.search(r'name="batch" value="([^"]+)"', step.content.decode()).group(1)
        step = operator_client.post(URL + "continue/", {"batch": batch})
        assert "So far: changed 20 of 20" in _text(step)
        done = operator_client.post(
            URL + "continue/", {"batch": batch}, headers={"HX-Request": "true"}
        )
        assert done.status_code == 200 and done["HX-Redirect"] == "/jobs/?task=bulk"
        assert set(Job.objects.values_list("priority", flat=True)) == {4}
        assert AuditEntry.objects.filter(action="reschedule", outcome="done").count() == 3
        again = operator_client.post(URL + "continue/", {"batch": batch})
        assert again.status_code == 400 and "already finished" in _text(again)
    finally:
        actions.CHUNK = actions_chunk


def test_preview__says_what_will_happen_row_by_row_and_in_counts(operator_client, jobs):
    """The preview restates the filter, shows before -> after in ISO UTC for the first rows,
    counts a large set by task and state, and the button says what will be done."""
    scheduled = [jobs.scheduled("digest") for _ in range(22)]
    held = [jobs.locked(identifier="digest") for _ in range(2)]
    jobs.failed("other")  # another task: not in the filter
    preview = operator_client.post(URL + "?task=digest", {"action": "run_now", "scope": "filter"})
    text = _text(preview)
    assert "Chosen by the filter: task = digest." in " ".join(text.split())
    first = Job.objects.get(id=scheduled[0].id)
    before = first.run_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"run_at: {before} →" in text
    row = r'<tr><td><span class="ident">(\w+)</span></td><td><span class="pill pill-(\w+)">'
    row += r'\w+</span></td><td class="num">(\d+)</td></tr>'
    counts = re.findall(row, preview.content.decode())
    assert counts == [("digest", "scheduled", "22"), ("digest", "locked", "2")]
    assert "Run now: 22 jobs; 2 held by a worker will be skipped" in text
    assert all(Job.objects.get(id=job.id).locked_at for job in held)
