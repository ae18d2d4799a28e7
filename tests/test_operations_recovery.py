"""The stale-worker sweep and force-unlock through worker_admin/operations/ (issue 14, points
1-3, 5, 6 for the sweep and force-unlock): the dry run pins the dead workers and their jobs and
shows each changed column before -> after; the apply releases only the pinned jobs still as
previewed, once, whichever face sends the confirmation, with its audit entry."""

from __future__ import annotations

import html
import re
from collections import Counter
from datetime import timedelta

import pytest
from django.test import Client

from tests.test_api import Api, user_with_token
from tests.test_operations_guarantees import THREADS, _all_at_once, _same_session
from tests.test_recovery import build_superseded, held_since, register, set_heartbeat
from worker_admin.audit import AuditEntry
from worker_admin.models import Job, Worker
from worker_admin.operations import force_unlock, sweep
from worker_admin.operations.claims import Confirmation
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.recovery import SweepStaleWorkersOptions
from worker_admin.roles import ensure_groups
from worker_admin.utils import WorkerUtils

SWEEP_URL, UNLOCK_URL = "/maintenance/sweep/", "/maintenance/force-unlock/"
SWEEP_PREVIEW, SWEEP_APPLY = "/api/maintenance/sweep/preview", "/api/maintenance/sweep/apply"
UNLOCK_PREVIEW = "/api/maintenance/force-unlock/preview"
UNLOCK_APPLY = "/api/maintenance/force-unlock/apply"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DEAD = "graphile_worker_dead"
FIVE, THIRTY = timedelta(minutes=5), timedelta(seconds=30)


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def _token(response) -> str:
    match = re.search(r'name="token" value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()[:2000]
    return match.group(1)


def _dead_worker_with(jobs, count: int = 3) -> list[Job]:
    register(jobs, DEAD, "20 minutes")
    return [held_since(jobs, jobs.add("resize"), DEAD, 19) for _ in range(count)]


# -- the preview -----------------------------------------------------------------------------


def test_sweep_preview__rows_before_after_in_iso_utc_and_the_input_restated(jobs):
    held = _dead_worker_with(jobs, 2)
    jobs.sql(
        f"INSERT INTO {jobs.q}._private_job_queues (queue_name, locked_at, locked_by) "
        "VALUES ('q1', now() - interval '19 minutes', %s)",
        [DEAD],
    )
    shown = sweep.preview("alice", FIVE, THIRTY, False, "host gone")
    assert shown.job_ids == [job.id for job in held]
    assert shown.worker_ids == [DEAD] and shown.queue_names == ["q1"]
    changes = {c.column: (c.before, c.after) for c in shown.rows[0].changes}
    assert changes["locked_by"] == (DEAD, "(none)")
    assert ISO_UTC.match(changes["locked_at"][0]) and changes["locked_at"][1] == "(none)"
    assert changes["attempts"] == ("1", "0")
    assert all(ISO_UTC.match(value) for value in changes["run_at"])
    assert changes["last_error"][1] == "Job recovered after worker interruption"
    assert shown.counts == [("resize", "recover", 2)]
    assert shown.summary == "release 2 jobs of 1 dead worker; unlock 1 queue"
    assert "stale after 5m without a heartbeat" in shown.restated
    assert "Node lock holders left out" in shown.restated
    # A dry run changes nothing.
    assert Job.objects.get(id=held[0].id).locked_by == DEAD


def test_sweep_preview__an_operator_is_told_the_admin_role_is_needed(django_user_model, jobs):
    ensure_groups()
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("opal", password="pw-123456789")
    user.groups.add(Group.objects.get(name="operator"))
    for attempt in (
        lambda: sweep.preview(user, FIVE, THIRTY, False),
        lambda: force_unlock.preview(user, [DEAD]),
    ):
        with pytest.raises(Refused, match="needs the admin role") as refused:
            attempt()
        assert refused.value.status == 403
    assert not Confirmation.objects.exists()


def test_sweep_apply__needs_a_reason_at_preview_or_apply(jobs):
    (job,) = _dead_worker_with(jobs, 1)
    shown = sweep.preview("alice", FIVE, THIRTY, False)
    with pytest.raises(Refused, match="Give a reason for the sweep"):
        sweep.apply("alice", shown.token)
    assert Job.objects.get(id=job.id).locked_by == DEAD
    with pytest.raises(Refused, match="NUL"):
        sweep.apply("alice", shown.token, reason="bad\x00reason")
    result = sweep.apply("alice", shown.token, reason="host gone")
    assert result.changed_ids == [job.id]
    assert AuditEntry.objects.get(action="sweep", outcome="done").reason == "host gone"


# -- pinned targets --------------------------------------------------------------------------


def test_sweep_apply__a_pinned_job_relocked_between_preview_and_apply_is_skipped(jobs):
    relocked, completed, changed, kept = _dead_worker_with(jobs, 4)
    shown = sweep.preview("alice", FIVE, THIRTY, False, "dead")
    # Between the dry run and the confirmation: another worker took one (someone released it
    # and a live worker locked it), one completed, one was rescheduled by hand.
    jobs.set(relocked, locked_by="'graphile_worker_live'", locked_at="now()")
    jobs.sql(f"DELETE FROM {jobs.q}._private_jobs WHERE id = %s", [completed.id])
    jobs.set(changed, revision="revision + 1", updated_at="now()")

    result = sweep.apply("alice", shown.token)

    assert result.changed_ids == [kept.id]
    assert result.held_ids == [relocked.id]
    assert result.stale_ids == [changed.id]
    assert result.gone_ids == [completed.id]
    assert result.summary == (
        "changed 1 of 4 jobs of 1 dead worker (1 recovered); 1 skipped: a worker holds them; "
        "1 changed since the preview; 1 gone"
    )
    assert Job.objects.get(id=relocked.id).locked_by == "graphile_worker_live"
    assert Job.objects.get(id=changed.id).locked_by == DEAD  # skipped: left as it is
    entry = AuditEntry.objects.get(action="sweep", outcome="done")
    assert entry.changed_ids == [kept.id] and entry.missing_ids == [completed.id]
    assert sorted(entry.skipped_ids) == sorted([relocked.id, changed.id])


def test_sweep_apply__a_job_the_dead_worker_locked_after_the_preview_is_untouched(jobs):
    (pinned,) = _dead_worker_with(jobs, 1)
    shown = sweep.preview("alice", FIVE, THIRTY, False, "dead")
    later = jobs.locked(by=DEAD, age="0 seconds")

    result = sweep.apply("alice", shown.token)

    assert result.changed_ids == [pinned.id]
    after = Job.objects.get(id=later.id)
    assert (after.locked_by, after.attempts) == (DEAD, later.attempts)
    assert later.id not in AuditEntry.objects.get(action="sweep", outcome="done").requested_ids


def test_sweep_apply__a_worker_that_heartbeats_after_the_dry_run_is_spared(jobs):
    (job,) = _dead_worker_with(jobs, 1)
    shown = sweep.preview("alice", FIVE, THIRTY, False, "dead")
    set_heartbeat(jobs, DEAD, "1 second")

    result = sweep.apply("alice", shown.token)

    assert (result.changed_ids, result.spared_ids, result.spared_workers) == ([], [job.id], [DEAD])
    assert "1 skipped: their worker heartbeated since the preview" in result.summary
    assert Worker.objects.filter(id=DEAD).exists()
    assert Job.objects.get(id=job.id).locked_by == DEAD


def test_sweep__superseded_job_dry_run_then_real_sweep_stays_failed(utils, jobs):
    made = build_superseded(utils, jobs)
    replaced, removed, replacement = made["replaced"], made["removed"], made["replacement"]

    shown = sweep.preview("alice", FIVE, THIRTY, False, "dead")

    plans = {row.id: row.plan for row in shown.rows}
    assert plans[replaced.id] == f"stays failed: superseded by job {replacement.id}"
    assert plans[removed.id] == "stays failed: superseded"
    assert plans[made["plain"].id] == plans[made["last_try"].id] == "recover: runnable again"
    row = next(row for row in shown.rows if row.id == replaced.id)
    assert {c.column for c in row.changes} == {"locked_by", "locked_at"}  # attempts stay used up
    assert shown.summary == "release 4 jobs of 1 dead worker; 2 superseded stay failed"
    assert any("stay failed" in warning for warning in shown.warnings)

    result = sweep.apply("alice", shown.token)

    assert sorted(result.superseded_ids) == sorted([replaced.id, removed.id])
    for job in (replaced, removed):
        after = Job.objects.with_state().get(id=job.id)
        assert (after.state, after.attempts, after.locked_by) == ("failed", 25, None)
    plain = Job.objects.get(id=made["plain"].id)
    assert (plain.locked_by, plain.attempts) == (None, made["plain"].attempts - 1)


def test_sweep_preview__decides_as_the_library_sweep_does(utils, jobs):
    """The one-pass dry run and worker_admin.recovery agree on who is dead and who is left alone
    (stale, resilient within and beyond 3x, orphans, Node-looking holders)."""
    register(jobs, "graphile_worker_stale", "20 minutes")
    register(jobs, "graphile_worker_resilient", "10 minutes")
    register(jobs, "graphile_worker_resilient_old", "16 minutes")
    register(jobs, "graphile_worker_fresh", "10 seconds")
    jobs.locked(by="graphile_worker_stale", age="19 minutes")
    for worker in ("graphile_worker_resilient", "graphile_worker_resilient_old"):
        job = jobs.locked(by=worker, age="9 minutes")
        jobs.set(job, flags="""'{"infrastructure_resilient": true}'::jsonb""")
    jobs.locked(by="graphile_worker_orphan", age="7 minutes")
    jobs.locked(by="pool-abc123", age="2 hours")
    jobs.locked(by="graphile_worker_fresh", age="1 minute")

    for include_node in (False, True):
        shown = sweep.preview("alice", FIVE, THIRTY, include_node, "check")
        library = utils.sweep_stale_workers(
            SweepStaleWorkersOptions(dry_run=True, include_node_lock_holders=include_node)
        )
        assert dict(shown.workers) == library.reasons
        assert dict(shown.excluded) == library.excluded
        assert sorted(shown.job_ids) == sorted(job.id for job in library.jobs)


def test_force_unlock__pinned_locks_only_and_rows(jobs):
    held = jobs.locked(by=DEAD, age="3 minutes")
    relocked = jobs.locked(by=DEAD, age="3 minutes")
    shown = force_unlock.preview("alice", [DEAD, "graphile_worker_nobody"], "stuck")
    assert shown.job_ids == [held.id, relocked.id]
    assert [(c.column, c.after) for c in shown.rows[0].changes] == [
        ("locked_by", "(none)"),
        ("locked_at", "(none)"),
    ]
    assert any("graphile_worker_nobody" in warning for warning in shown.warnings)
    jobs.set(relocked, locked_by="'graphile_worker_live'", locked_at="now()")
    later = jobs.locked(by=DEAD, age="0 seconds")

    result = force_unlock.apply("alice", shown.token)

    assert (result.changed_ids, result.held_ids) == ([held.id], [relocked.id])
    assert result.summary == (
        "changed 1 of 2 jobs, unlocked 0 queues; 1 skipped: a worker holds them"
    )
    assert Job.objects.get(id=later.id).locked_by == DEAD
    assert Job.objects.get(id=held.id).attempts == held.attempts  # only the lock changes
    with pytest.raises(AlreadyUsed):
        force_unlock.apply("alice", shown.token)


# -- acting once, from every face ------------------------------------------------------------


@pytest.fixture
def dead_fleet(worker_rows, django_user_model):
    """Committed rows: a dead registered worker holding 4 jobs, a live one holding a job; one
    admin with a page session and an API token."""
    ensure_groups()
    user, secret = user_with_token(django_user_model, "admin", "sweeper")
    page = Client()
    page.force_login(user)
    utils = WorkerUtils()
    from tests.factories import JobFactory

    jobs = JobFactory(utils)
    held = [job.id for job in _dead_worker_with(jobs, 4)]
    register(jobs, "graphile_worker_live", "5 seconds")
    busy = jobs.locked(by="graphile_worker_live", age="1 minute").id
    return page, secret, held, busy


def _check_once(replies, held: list[int], busy: int, action: str) -> AuditEntry:
    done = list(AuditEntry.objects.filter(action=action, outcome="done"))
    assert len(done) == 1, [entry.summary for entry in done]
    assert sorted(done[0].changed_ids) == sorted(held)
    assert not Job.objects.filter(id__in=held, locked_by__isnull=False).exists()
    # Each job got exactly one attempt back (once, not once per request).
    assert set(Job.objects.filter(id__in=held).values_list("attempts", flat=True)) == {0}
    assert Job.objects.get(id=busy).locked_by == "graphile_worker_live"
    return done[0]


def test_sweep_apply__one_api_fingerprint_applied_by_many_requests_acts_once(dead_fleet):
    _page, secret, held, busy = dead_fleet
    body = {"threshold_minutes": 5, "delay_seconds": 30, "reason": "race"}
    preview = Api(Client(), secret).post(SWEEP_PREVIEW, body)
    assert preview.status_code == 200, preview.content
    apply = body | {"fingerprint": preview.json()["fingerprint"]}

    replies = _all_at_once(lambda: Api(Client(), secret).post(SWEEP_APPLY, apply))

    assert Counter(r.status_code for r in replies) == Counter({200: 1, 409: THREADS - 1})
    entry = _check_once(replies, held, busy, "sweep")
    for reply in replies:
        if reply.status_code == 409:
            assert reply.json()["audit_entry_id"] == entry.pk
            assert reply.json()["audit_entry_url"].startswith("/audit/")


def test_sweep_apply__one_confirmation_from_page_and_api_together_acts_once(dead_fleet):
    page, secret, held, busy = dead_fleet
    form = {"threshold_minutes": "5", "delay_seconds": "30"}
    token = _token(page.post(SWEEP_URL, form))
    body = {"threshold_minutes": 5, "delay_seconds": 30, "reason": "race"}
    calls = iter(range(THREADS))

    def send():
        if next(calls) % 2:
            return _same_session(page).post(SWEEP_URL, {"token": token, "reason": "race"})
        return Api(Client(), secret).post(SWEEP_APPLY, body | {"fingerprint": token})

    replies = _all_at_once(send)

    statuses = Counter(r.status_code for r in replies)
    assert statuses[302] + statuses[200] == 1, statuses
    assert statuses[400] + statuses[409] == THREADS - 1, statuses
    _check_once(replies, held, busy, "sweep")
    for reply in replies:
        if reply.status_code in (400, 409):
            assert "already used" in _text(reply)


def test_force_unlock_apply__one_fingerprint_applied_by_many_requests_acts_once(dead_fleet):
    _page, secret, held, busy = dead_fleet
    body = {"worker_ids": [DEAD], "reason": "race"}
    preview = Api(Client(), secret).post(UNLOCK_PREVIEW, body)
    assert preview.status_code == 200, preview.content
    apply = body | {"fingerprint": preview.json()["fingerprint"]}

    replies = _all_at_once(lambda: Api(Client(), secret).post(UNLOCK_APPLY, apply))

    assert Counter(r.status_code for r in replies) == Counter({200: 1, 409: THREADS - 1})
    done = list(AuditEntry.objects.filter(action="force_unlock", outcome="done"))
    assert len(done) == 1 and sorted(done[0].changed_ids) == sorted(held)
    assert Job.objects.get(id=busy).locked_by == "graphile_worker_live"
