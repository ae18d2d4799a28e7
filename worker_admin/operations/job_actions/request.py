"""What a job action asks for, checked: the kind, the target (ids or a filter), the reason and
the reschedule values. Every face builds an `ActionRequest` through these functions, so the
page, the API and the command line refuse the same things with the same sentence."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from worker_admin.filters import JobFilters, parse_filters
from worker_admin.operations.errors import Refused
from worker_admin.operations.job_actions.kinds import ActionKind
from worker_admin.utils import RUN_NOW, SMALLINT_MAX, RescheduleJobOptions, RunNow

MAX_EXPLICIT_IDS = 10_000
REASON_MAX = 2_000
RUN_AT_FUTURE_LIMIT = timedelta(days=3650)
RUN_AT_PAST_TOLERANCE = timedelta(minutes=5)
BIGINT_DIGITS = 18


@dataclass(frozen=True)
class Target:
    ids: tuple[int, ...] = ()
    filters: JobFilters | None = None

    @property
    def is_filter(self) -> bool:
        return self.filters is not None

    def describe(self) -> dict[str, Any]:
        if self.filters is not None:
            return {"filter": self.filters.query(cursor=None)}
        return {"ids": list(self.ids)}


@dataclass(frozen=True)
class ActionRequest:
    kind: ActionKind
    target: Target
    reason: str = ""
    options: RescheduleJobOptions | None = None

    def parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {"action": self.kind.value}
        if self.options is not None:
            run_at = self.options.run_at
            params |= {
                "run_at": "now" if run_at is RUN_NOW else (run_at.isoformat() if run_at else None),
                "priority": self.options.priority,
                "attempts": self.options.attempts,
                "max_attempts": self.options.max_attempts,
            }
        return params

    def fingerprint(self) -> str:
        """The action, its values and its target (the reason is written at the confirmation,
        so it is not part of it)."""
        body = {"p": self.parameters(), "t": self.target.describe()}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def stored(self) -> dict[str, Any]:
        """The request as JSON, for its confirmation row (see `from_stored`)."""
        return {
            "kind": self.kind.value,
            "target": self.target.describe(),
            "options": self.parameters() if self.options is not None else None,
        }


def from_stored(stored: dict[str, Any], reason: str = "") -> ActionRequest:
    target_data = stored["target"]
    if "filter" in target_data:
        target = Target(filters=parse_filters(target_data["filter"]))
    else:
        target = Target(ids=tuple(target_data["ids"]))
    options = None
    if stored.get("options") is not None:
        raw = stored["options"]
        run_at = raw.get("run_at")
        options = RescheduleJobOptions(
            run_at=RUN_NOW
            if run_at == "now"
            else (datetime.fromisoformat(run_at) if run_at else None),
            priority=raw.get("priority"),
            attempts=raw.get("attempts"),
            max_attempts=raw.get("max_attempts"),
        )
    return ActionRequest(ActionKind(stored["kind"]), target, reason, options)


def action_kind(value: str) -> ActionKind:
    try:
        return ActionKind(value)
    except ValueError:
        raise Refused("Unknown action; choose one from the list.") from None


def parse_ids(values: Iterable[Any]) -> tuple[int, ...]:
    """Job ids from text or numbers, in order, without repeats; a sentence for anything else."""
    values = list(values)
    if len(values) > MAX_EXPLICIT_IDS:
        raise Refused(
            f"{len(values):,} ids were sent; pick at most {MAX_EXPLICIT_IDS:,} rows, or act on "
            "all jobs matching a filter."
        )
    ids: dict[int, None] = {}
    for value in values:
        text = str(value)
        # isascii: "¹" and "①" are digits to str.isdigit() but not to int().
        if not (text.isascii() and text.isdigit()) or len(text) > BIGINT_DIGITS or int(text) < 1:
            raise Refused(f"“{text[:30]}” is not a job id.")
        ids[int(text)] = None
    if not ids:
        raise Refused("No jobs were chosen: tick some rows, or act on all matching jobs.")
    return tuple(ids)


def filter_target(filters: JobFilters) -> Target:
    if filters.problems:
        raise Refused("The filter has invalid values: " + " ".join(filters.problems))
    return Target(filters=filters)


def check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX or "\x00" in reason:
        raise Refused(f"The reason must be at most {REASON_MAX:,} characters of text.")
    return reason


def _number(value: int | None, label: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused(f"{label} must be a whole number between {low} and {high}.")
    return value


def reschedule_options(
    run_at: datetime | RunNow | None = None,
    priority: int | None = None,
    attempts: int | None = None,
    max_attempts: int | None = None,
) -> RescheduleJobOptions:
    """The values a reschedule sets, checked as the schema's columns and an operator's sense
    would: a run_at more than ten years away or in the past is surely a typo."""
    if isinstance(run_at, datetime):
        now = timezone.now()
        if run_at > now + RUN_AT_FUTURE_LIMIT:
            raise Refused("Run at is more than ten years away; is that a typo?")
        if run_at < now - RUN_AT_PAST_TOLERANCE:
            raise Refused("Run at is in the past; use “Run now” to run the jobs at once.")
    options = RescheduleJobOptions(
        run_at=run_at,
        priority=_number(priority, "Priority", -SMALLINT_MAX - 1, SMALLINT_MAX),
        attempts=_number(attempts, "Attempts", 0, SMALLINT_MAX),
        max_attempts=_number(max_attempts, "Max attempts", 1, SMALLINT_MAX),
    )
    if options == RescheduleJobOptions():
        raise Refused("Nothing to change: give a run at, priority, attempts or max attempts.")
    return options


def build_request(
    kind: ActionKind,
    target: Target,
    *,
    reason: str = "",
    options: RescheduleJobOptions | None = None,
) -> ActionRequest:
    if kind is ActionKind.REMOVE and (target.is_filter or len(target.ids) != 1):
        raise Refused("Remove by key works on one job at a time: give its id or its key.")
    if kind is not ActionKind.RESCHEDULE:
        options = None
    return ActionRequest(kind=kind, target=target, reason=check_reason(reason), options=options)


def options_for(kind: ActionKind, options: RescheduleJobOptions | None) -> RescheduleJobOptions:
    if kind is ActionKind.RUN_NOW:
        return RescheduleJobOptions(run_at=RUN_NOW)
    if kind is ActionKind.RETRY:
        return RescheduleJobOptions(run_at=RUN_NOW, attempts=0)
    if options is None:
        raise Refused("Say what to change: run at, priority, attempts or max attempts.")
    return options
