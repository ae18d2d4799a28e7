"""The job actions the console offers, and what each one does, in words."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ActionKind(StrEnum):
    RUN_NOW = "run_now"
    RETRY = "retry"
    RESCHEDULE = "reschedule"
    COMPLETE = "complete"
    FAIL = "fail"
    REMOVE = "remove"


@dataclass(frozen=True)
class ActionInfo:
    label: str
    verb: str
    destructive: bool
    explanation: str


ACTIONS: dict[ActionKind, ActionInfo] = {
    ActionKind.RUN_NOW: ActionInfo(
        "Run now", "run", False, "Sets run_at to now, so the jobs are ready at once."
    ),
    ActionKind.RETRY: ActionInfo(
        "Retry",
        "retry",
        False,
        "Resets attempts to 0 and run_at to now: failed jobs get all their attempts back.",
    ),
    ActionKind.RESCHEDULE: ActionInfo(
        "Reschedule",
        "reschedule",
        False,
        "Replaces run_at, priority, attempts or max attempts; fields left empty stay as they are.",
    ),
    ActionKind.COMPLETE: ActionInfo(
        "Complete",
        "complete",
        True,
        "Deletes the jobs as if they had succeeded. Completed jobs leave no trace in the schema; "
        "the audit log keeps a copy of each deleted row.",
    ),
    ActionKind.REMOVE: ActionInfo(
        "Remove by key",
        "remove",
        True,
        "Calls remove_job with the job's key: an unlocked job is deleted; one a worker holds "
        "keeps running but loses its key and will not be retried.",
    ),
    ActionKind.FAIL: ActionInfo(
        "Permanently fail",
        "fail",
        True,
        "Uses up every attempt and records the reason as last_error: the jobs will not run again "
        "unless retried.",
    ),
}
