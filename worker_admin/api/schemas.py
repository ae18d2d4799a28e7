"""What the API accepts, as pydantic schemas: they document the API (/api/schema) and refuse
wrong types, unknown fields and out-of-range numbers before any code runs.

The limits are the console's own (filters.py, forms.py, forms_actions.py, actions.py); the
console's forms still have the last word on what a value means (a run_at too far away, an empty
reschedule), so the web, the CLI and the API refuse the same things.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import AfterValidator, AwareDatetime, ConfigDict

from worker_admin.filters import MAX_SEARCH, SORTS, STATE_TABS
from worker_admin.operations.job_actions import MAX_EXPLICIT_IDS, ActionKind
from worker_admin.operations.job_specs import (
    BATCH_MAX_ITEMS,
    FLAG_MAX,
    IDENTIFIER_MAX,
    KEY_MAX,
    QUEUE_MAX,
    SMALLINT_MIN,
)
from worker_admin.recovery import CleanupTask
from worker_admin.utils import BIGINT_MAX, SMALLINT_MAX, JobKeyMode

# PostgreSQL text cannot hold NUL; refusing it here keeps it out of every query.
NO_NUL = r"^[^\x00]*$"
REASON_MAX = 2_000
FINGERPRINT_MAX = 1_000
MAX_WORKER_IDS = 1_000
WORKER_ID_MAX = 1_000
KEEP_MAX = 1_000

JobId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
Priority = Annotated[int, Field(ge=SMALLINT_MIN, le=SMALLINT_MAX)]
Attempts = Annotated[int, Field(ge=0, le=SMALLINT_MAX)]
MaxAttempts = Annotated[int, Field(ge=1, le=SMALLINT_MAX)]


def _in_utc(value: datetime) -> datetime:
    """PostgreSQL takes offsets up to ±15:59 only (Python up to ±23:59): compare in UTC."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("the date is out of range once converted to UTC") from None


# A date and time with a UTC offset (ISO 8601), kept in UTC.
Moment = Annotated[AwareDatetime, AfterValidator(_in_utc)]
Reason = Annotated[str, Field(max_length=REASON_MAX, pattern=NO_NUL)]
Fingerprint = Annotated[str, Field(min_length=1, max_length=FINGERPRINT_MAX, pattern=NO_NUL)]


def text(limit: int, *, min_length: int = 0) -> Any:
    return Annotated[str, Field(min_length=min_length, max_length=limit, pattern=NO_NUL)]


State = Literal[tuple(STATE_TABS)]  # type: ignore[valid-type]
SortKey = Literal[tuple(SORTS)]  # type: ignore[valid-type]
ActionName = Literal[tuple(kind.value for kind in ActionKind)]  # type: ignore[valid-type]
KeyMode = Literal[tuple(mode.value for mode in JobKeyMode)]  # type: ignore[valid-type]
CleanupName = Literal[tuple(task.value for task in CleanupTask)]  # type: ignore[valid-type]


class Strict(Schema):
    """Unknown fields are refused: a misspelt option must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class JobFilter(Strict):
    """The jobs page's filters (worker_admin/filters.py); `search` is the page's search box."""

    state: State | None = None
    task: text(128) | None = None
    queue: text(128) | None = None
    key: text(512) | None = None
    locked_by: text(512) | None = None
    priority_min: Priority | None = None
    priority_max: Priority | None = None
    created_after: Moment | None = None
    created_before: Moment | None = None
    run_after: Moment | None = None
    run_before: Moment | None = None
    has_error: Literal["yes", "no"] | None = None
    search: text(MAX_SEARCH) | None = None
    error: text(2_000) | None = None
    failing: Literal["yes"] | None = Field(
        None, description="yes: failed or retrying jobs only (a failure group's jobs)."
    )


class JobListQuery(JobFilter):
    sort: SortKey | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: text(2_000) | None = None
    payload: bool = Field(False, description="Include each job's payload (redacted).")


class JobActionBody(Strict):
    """One job action on explicit ids, on the job holding a key, or on every job matching a
    filter (exactly one of the three). run_at, priority, attempts and max_attempts belong to
    reschedule only."""

    action: ActionName
    ids: list[JobId] | None = Field(None, min_length=1, max_length=MAX_EXPLICIT_IDS)
    key: text(KEY_MAX, min_length=1) | None = None
    filter: JobFilter | None = None
    reason: Reason = ""
    run_at: Moment | Literal["now"] | None = None
    priority: Priority | None = None
    attempts: Attempts | None = None
    max_attempts: MaxAttempts | None = None


class JobActionApply(JobActionBody):
    fingerprint: Fingerprint


class NewJob(Strict):
    """One job to add; unset fields take the schema's defaults (queue none, run now, 25
    attempts, priority 0, no flags, no key)."""

    identifier: text(IDENTIFIER_MAX, min_length=1)
    payload: Any = None
    queue_name: text(QUEUE_MAX, min_length=1) | None = None
    run_at: Moment | None = None
    max_attempts: MaxAttempts | None = None
    priority: Priority | None = None
    flags: list[text(FLAG_MAX, min_length=1)] | None = Field(None, max_length=100)
    job_key: text(KEY_MAX, min_length=1) | None = None
    job_key_mode: KeyMode | None = None


class NewJobApply(NewJob):
    fingerprint: Fingerprint


class NewBatch(Strict):
    """Jobs added in one transaction, all or nothing (unsafe_dedupe is not allowed here)."""

    jobs: list[NewJob] = Field(..., min_length=1, max_length=BATCH_MAX_ITEMS)


class NewBatchApply(NewBatch):
    fingerprint: Fingerprint


class SweepBody(Strict):
    threshold_minutes: int = Field(5, ge=1, le=24 * 60)
    delay_seconds: int = Field(30, ge=0, le=24 * 3600)
    include_node_lock_holders: bool = False
    reason: Reason = ""


class SweepApply(SweepBody):
    fingerprint: Fingerprint


class ForceUnlockBody(Strict):
    worker_ids: list[text(WORKER_ID_MAX, min_length=1)] = Field(
        ..., min_length=1, max_length=MAX_WORKER_IDS
    )
    reason: Reason = ""


class ForceUnlockApply(ForceUnlockBody):
    fingerprint: Fingerprint


class CleanupBody(Strict):
    tasks: list[CleanupName] = Field(default_factory=list, max_length=len(CleanupTask))
    keep_task_identifiers: list[text(IDENTIFIER_MAX, min_length=1)] = Field(
        default_factory=list, max_length=KEEP_MAX
    )
    reason: Reason = ""


class CleanupApply(CleanupBody):
    fingerprint: Fingerprint
