"""What a caller hands to WorkerUtils: job specs, reschedule options, their limits and checks.

Every check raises `InvalidJobSpec` or `InvalidJobAction` with one sentence before any SQL runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, ClassVar, Protocol

ANALYZE_AFTER_JOBS = 10_000
SMALLINT_MAX = 32_767
BIGINT_MAX = 2**63 - 1
# One call = one statement with one array parameter and one transaction holding the row locks of
# every job it changes; bigger selections go through the bulk action, which works in chunks.
MAX_IDS_PER_CALL = 10_000
MAX_REASON_LENGTH = 10_000
# No real worker id comes close; the limit only keeps a pasted document out of the query.
MAX_WORKER_ID_LENGTH = 1_000


class WorkerUtilsError(Exception):
    """A request that the console refuses before it reaches the database; the text is for users."""


class InvalidJobSpec(WorkerUtilsError, ValueError):
    pass


class InvalidJobAction(WorkerUtilsError, ValueError):
    """Bad arguments to a job action (ids, reason, reschedule options, key, worker ids)."""


class FeatureUnavailable(WorkerUtilsError):
    pass


class JobKeyMode(StrEnum):
    REPLACE = "replace"
    PRESERVE_RUN_AT = "preserve_run_at"
    UNSAFE_DEDUPE = "unsafe_dedupe"


@dataclass(frozen=True)
class JobSpec:
    """Options for a new job; None means the schema's default (GRAPHILE_WORKER.md §4)."""

    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    job_key_mode: JobKeyMode | None = None
    priority: int | None = None
    flags: Sequence[str] | None = None

    def validate(self) -> None:
        _check_text("queue_name", self.queue_name, 128, allow_empty=False)
        _check_text("job_key", self.job_key, 512, allow_empty=False)
        if self.max_attempts is not None:
            _check_int("max_attempts", self.max_attempts, 1, SMALLINT_MAX)
        if self.priority is not None:
            _check_int("priority", self.priority, -SMALLINT_MAX - 1, SMALLINT_MAX)
        if self.run_at is not None and (
            not isinstance(self.run_at, datetime) or self.run_at.tzinfo is None
        ):
            raise InvalidJobSpec("run_at must be a timezone-aware datetime.")
        if self.job_key_mode is not None and self.job_key_mode not in set(JobKeyMode):
            raise InvalidJobSpec(f"job_key_mode must be one of {', '.join(JobKeyMode)}.")
        for flag in self.flags or ():
            _check_text("each flag", flag, 512, allow_empty=False)


@dataclass(frozen=True)
class RawJobSpec:
    identifier: str
    payload: Any = None
    spec: JobSpec = field(default_factory=JobSpec)


class TaskPayload(Protocol):
    """A typed job payload: a dataclass (or any object with `to_payload()`) naming its task."""

    IDENTIFIER: ClassVar[str]


@dataclass(frozen=True)
class WorkerStatus:
    id: str
    started_at: datetime
    last_heartbeat_at: datetime
    metadata: Any
    heartbeat_age: timedelta
    is_stale: bool


class RunNow(Enum):
    """Marker for "run at the database's now()": resolved inside the reschedule transaction, so
    it is the instant the function writes into updated_at, whatever the web server's clock says."""

    RUN_NOW = "now"


RUN_NOW = RunNow.RUN_NOW


@dataclass(frozen=True)
class RescheduleJobOptions:
    """What `reschedule_jobs` changes. None KEEPS the job's current value, for every field.

    This follows the SQL function `reschedule_jobs`, not the Rust documentation, which claims an
    omitted run_at makes the jobs run immediately: the function keeps run_at when it is null
    (GRAPHILE_WORKER.md §4). "Run now" must be asked for: `run_at=RUN_NOW` (or
    `RescheduleJobOptions.run_now(...)`), which means the database's now() at the time of the call.

    `attempts=0` gives a permanently failed job its attempts back; it runs again only if attempts
    ends up below max_attempts.
    """

    run_at: datetime | RunNow | None = None
    priority: int | None = None
    attempts: int | None = None
    max_attempts: int | None = None

    @classmethod
    def run_now(
        cls,
        *,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> RescheduleJobOptions:
        return cls(RUN_NOW, priority, attempts, max_attempts)

    def validate(self) -> None:
        """Refuse what the function would reject (smallint overflow, max_attempts < 1) or
        silently misread (a naive datetime, taken in the session's time zone), and a call that
        changes nothing."""
        fields = (self.run_at, self.priority, self.attempts, self.max_attempts)
        if all(value is None for value in fields):
            raise InvalidJobAction(
                "Nothing to change: give at least one of run_at, priority, attempts or "
                "max_attempts."
            )
        at = self.run_at
        if at is not None and at is not RUN_NOW and not _is_aware_datetime(at):
            raise InvalidJobAction("run_at must be a timezone-aware datetime or RUN_NOW.")
        checks = (
            ("priority", self.priority, -SMALLINT_MAX - 1),
            ("attempts", self.attempts, 0),
            ("max_attempts", self.max_attempts, 1),
        )
        for name, value, low in checks:
            if value is not None:
                _check_int(name, value, low, SMALLINT_MAX, error=InvalidJobAction)


def _check_text(
    name: str,
    value: object,
    max_length: int,
    *,
    allow_empty: bool,
    error: type[WorkerUtilsError] = InvalidJobSpec,
) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise error(f"{name} must be text.")
    if not value and not allow_empty:
        raise error(f"{name} must not be empty.")
    if len(value) > max_length:
        raise error(f"{name} is {len(value):,} characters; the limit is {max_length:,}.")
    if "\x00" in value:
        raise error(f"{name} must not contain NUL characters.")


def _check_int(
    name: str, value: object, low: int, high: int, *, error: type[WorkerUtilsError] = InvalidJobSpec
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be a whole number.")
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}; got {value}.")


def _check_identifier(identifier: object) -> str:
    if not isinstance(identifier, str) or not identifier.strip():
        raise InvalidJobSpec("The task identifier must be non-empty text.")
    _check_text("The task identifier", identifier, 128, allow_empty=False)
    return identifier


def _is_aware_datetime(value: object) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _list_argument(values: object, what: str) -> list[object]:
    """The items of a list-like argument. Text is refused because a string is a sequence too:
    "123" would otherwise mean the ids 1, 2 and 3."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise InvalidJobAction(f"{what} must be given as a list, not {type(values).__name__}.")
    return list(values)


def _distinct(items: Iterable[Any], what: str) -> tuple[Any, ...]:
    """De-duplicate in order (after each item was checked, so True never merges into 1), then
    enforce the per-call bounds."""
    distinct = tuple(dict.fromkeys(items))
    if not distinct:
        raise InvalidJobAction(f"No {what} given.")
    if len(distinct) > MAX_IDS_PER_CALL:
        raise InvalidJobAction(
            f"{len(distinct):,} {what} given; at most {MAX_IDS_PER_CALL:,} ids per call; "
            "use the bulk action, which works in chunks."
        )
    return distinct


def _job_ids(ids: object) -> tuple[int, ...]:
    """Distinct job ids in the order given, each a possible bigint identity value (1..2^63-1)."""
    checked = []
    for value in _list_argument(ids, "Job ids"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidJobAction(f"Job ids must be whole numbers; got {_short(value)}.")
        if not 1 <= value <= BIGINT_MAX:
            raise InvalidJobAction(f"Job ids are between 1 and {BIGINT_MAX}; got {value}.")
        checked.append(int(value))  # a plain int, also for an IntEnum or other subclass
    return _distinct(checked, "job ids")


def _worker_ids(worker_ids: object) -> tuple[str, ...]:
    """Distinct worker ids (the `locked_by` values) in the order given."""
    checked = []
    for value in _list_argument(worker_ids, "Worker ids"):
        if not isinstance(value, str):
            raise InvalidJobAction(f"Worker ids must be text; got {_short(value)}.")
        _check_text(
            "A worker id", value, MAX_WORKER_ID_LENGTH, allow_empty=False, error=InvalidJobAction
        )
        checked.append(str(value))
    return _distinct(checked, "worker ids")


def _payload_json(payload: Any) -> str | None:
    if payload is None:
        return None
    try:
        return json.dumps(payload, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJobSpec(f"The payload is not valid JSON: {exc}.") from None


def task_payload(task: TaskPayload) -> Any:
    if hasattr(task, "to_payload"):
        return task.to_payload()
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        return dataclasses.asdict(task)
    if isinstance(task, Mapping):
        return dict(task)
    raise InvalidJobSpec(f"{type(task).__name__} is neither a dataclass nor has to_payload().")
