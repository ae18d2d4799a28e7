"""The job states, defined once (GRAPHILE_WORKER.md §3) and used by every face of the console.

Each predicate is a Q object evaluated against the database clock, never Python's, and against
the same reading of it as the schema's functions: `now()`, the start of the transaction.
add_job's default run_at, reschedule_jobs "now" and the 4-hour rule all use it, so a job added or
rescheduled to run now is ready, never scheduled, in the transaction that did it, and a page's
count and its list, read in one transaction, agree about a job whose run_at is right now. Django's
`Now()` is PostgreSQL's statement_timestamp(), a later instant inside a transaction: it is not
used here. Outside a transaction (autocommit) the two are the same instant.
"""

from __future__ import annotations

from enum import StrEnum

from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Now


class JobState(StrEnum):
    READY = "ready"
    SCHEDULED = "scheduled"
    LOCKED = "locked"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return self.value.capitalize()

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    JobState.READY: "Waiting for a free worker: run_at has passed.",
    JobState.SCHEDULED: "Waiting for its run_at, including failed attempts waiting to retry.",
    JobState.LOCKED: "Held by a worker, running or abandoned by a crashed one.",
    JobState.FAILED: "Used every attempt; it will not run again unless rescheduled.",
}


class TransactionNow(Now):
    """`now()` (CURRENT_TIMESTAMP): the transaction's start, the schema functions' clock."""

    def as_sql(self, compiler, connection, **extra_context):
        return "CURRENT_TIMESTAMP", []

    as_postgresql = as_sql


_UNLOCKED = Q(locked_at__isnull=True)
_ATTEMPTS_LEFT = Q(attempts__lt=F("max_attempts"))
# is_available is the schema's generated column for exactly "unlocked with attempts left".
# Saying it too changes no result, but lets PostgreSQL use the partial jobs_main_index
# (priority, run_at WHERE is_available) for ready and scheduled jobs.
_AVAILABLE = Q(is_available=True) & _UNLOCKED & _ATTEMPTS_LEFT

STATE_PREDICATES: dict[JobState, Q] = {
    JobState.LOCKED: Q(locked_at__isnull=False),
    # attempts > 0 follows from attempts >= max_attempts (max_attempts is checked >= 1), but the
    # planner cannot prove it from a CHECK constraint: said here, it lets the failed tab and its
    # count use the opt-in console_jobs_failing index (WHERE attempts > 0 AND locked_at IS NULL).
    JobState.FAILED: _UNLOCKED & Q(attempts__gt=0) & Q(attempts__gte=F("max_attempts")),
    JobState.SCHEDULED: _AVAILABLE & Q(run_at__gt=TransactionNow()),
    JobState.READY: _AVAILABLE & Q(run_at__lte=TransactionNow()),
}

# Not a state: a triage view of jobs that failed at least once and will run again.
RETRYING = _AVAILABLE & Q(attempts__gt=0)


def state_case() -> Case:
    """An annotation giving each row its state name, in the order the predicates are checked."""
    return Case(
        *(When(predicate, then=Value(state.value)) for state, predicate in STATE_PREDICATES.items())
    )
