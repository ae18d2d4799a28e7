"""The four job states (GRAPHILE_WORKER.md §3) against hand-built rows, edge cases included."""

import pytest

from worker_admin.models import Job
from worker_admin.states import JobState
from worker_admin.utils import RUN_NOW, RescheduleJobOptions


def _states(ids):
    rows = Job.objects.filter(id__in=ids).with_state().values_list("id", "state")
    return dict(rows)


def test_state__each_predicate_matches_exactly_its_rows(jobs):
    ready = jobs.ready()
    scheduled = jobs.scheduled()
    locked = jobs.locked()
    failed = jobs.failed()
    ids = [ready.id, scheduled.id, locked.id, failed.id]

    assert list(Job.objects.filter(id__in=ids).ready().values_list("id", flat=True)) == [ready.id]
    assert list(Job.objects.filter(id__in=ids).scheduled().values_list("id", flat=True)) == [
        scheduled.id
    ]
    assert list(Job.objects.filter(id__in=ids).locked().values_list("id", flat=True)) == [locked.id]
    assert list(Job.objects.filter(id__in=ids).failed().values_list("id", flat=True)) == [failed.id]
    assert _states(ids) == {
        ready.id: "ready",
        scheduled.id: "scheduled",
        locked.id: "locked",
        failed.id: "failed",
    }


def test_state__run_at_exactly_now_is_ready(jobs):
    # now() is the transaction's start, so run_at = now() compares equal within the test.
    job = jobs.set(jobs.add(), run_at="now()")
    assert _states([job.id]) == {job.id: "ready"}


def test_state__locked_wins_over_used_up_attempts(jobs):
    job = jobs.locked()
    job = jobs.set(job, attempts="max_attempts")
    assert job.attempts == job.max_attempts
    assert _states([job.id]) == {job.id: "locked"}
    assert not Job.objects.filter(id=job.id).failed().exists()


def test_state__lock_of_any_age_is_locked(jobs):
    old = jobs.locked(age="3 days")
    assert _states([old.id]) == {old.id: "locked"}


def test_state__queue_less_jobs_have_states_too(jobs):
    job = jobs.ready(queue_name=None)
    queued = jobs.ready(queue_name="emails")
    assert job.job_queue_id is None
    assert _states([job.id, queued.id]) == {job.id: "ready", queued.id: "ready"}


def test_state__retrying_is_scheduled_with_attempts_but_not_failed(jobs):
    retrying = jobs.retrying()
    failed = jobs.failed()
    fresh = jobs.scheduled()
    ids = [retrying.id, failed.id, fresh.id]
    assert list(Job.objects.filter(id__in=ids).retrying().values_list("id", flat=True)) == [
        retrying.id
    ]
    assert _states([retrying.id]) == {retrying.id: "scheduled"}


@pytest.mark.parametrize("state", list(JobState))
def test_state__in_state_accepts_names(jobs, state):
    jobs.ready()
    assert Job.objects.in_state(state.value).count() == Job.objects.in_state(state).count()


# -- the clock: the transaction's now(), the schema functions' own --------------------------------


def test_state__run_at_at_the_transactions_now_is_ready_a_microsecond_later_scheduled(jobs):
    """The boundary itself: run_at <= now() is ready (the transaction's now(), fixed in a test)."""
    at_now = jobs.set(jobs.add(), run_at="now()")
    after = jobs.set(jobs.add(), run_at="now() + interval '1 microsecond'")

    assert _states([at_now.id, after.id]) == {at_now.id: "ready", after.id: "scheduled"}
    assert list(Job.objects.filter(id__in=[at_now.id, after.id]).ready()) == [at_now]


def test_state__uses_the_transactions_clock_not_the_statements(jobs):
    """A run_at stamped by a later statement of the same transaction (statement_timestamp(),
    Django's Now()) is still in the future by the console's clock, as by the schema functions'
    now(); a job added with the default run_at, or rescheduled to now, is ready at once."""
    later = jobs.set(jobs.add(), run_at="statement_timestamp()")
    [[stamped, txn_now]] = jobs.sql(
        f"SELECT run_at, now() FROM {jobs.q}._private_jobs WHERE id = %s", [later.id]
    )
    assert stamped > txn_now  # the test runs inside one transaction
    added = jobs.add()  # add_job: run_at = now()
    rescheduled = jobs.scheduled()
    jobs.utils.reschedule_jobs([rescheduled.id], RescheduleJobOptions(run_at=RUN_NOW))

    assert _states([later.id, added.id, rescheduled.id]) == {
        later.id: "scheduled",
        added.id: "ready",
        rescheduled.id: "ready",
    }
