"""Rows and reports as JSON-ready dicts. Durations are seconds; times are ISO 8601."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from worker_admin.api.common import audit_parameters_for, payload_for
from worker_admin.audit import EXPORT_FIELDS, _queue_name, _task_identifier


def seconds(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 3) if value is not None else None


def job(request, row, *, with_payload: bool) -> dict[str, Any]:
    """One job. `row` may carry a `state` annotation (JobQuerySet.with_state())."""
    data = {
        "id": row.id,
        "task_identifier": _task_identifier(row),
        "queue_name": _queue_name(row),
        "state": getattr(row, "state", None),
        "priority": row.priority,
        "run_at": row.run_at,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "last_error": row.last_error,
        "key": row.key,
        "locked_at": row.locked_at,
        "locked_by": row.locked_by,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "revision": row.revision,
        "flags": row.flag_names,
    }
    if with_payload:
        data["payload"] = payload_for(request, row)
    return data


def counts(value) -> dict[str, int]:
    return {
        "ready": value.ready,
        "scheduled": value.scheduled,
        "locked": value.locked,
        "failed": value.failed,
        "retrying": value.retrying,
        "total": value.total,
    }


def estimates(value) -> dict[str, dict]:
    """Each count with its 95 % interval: value, low, high (null: unbounded), exact, method."""
    names = ("total", "ready", "scheduled", "locked", "failed", "retrying")
    return {name: value.estimate(name).as_dict() for name in names}


def audit_entry(request, entry) -> dict[str, Any]:
    data = {name: getattr(entry, name) for name in EXPORT_FIELDS}
    data["parameters"] = audit_parameters_for(request, entry.parameters)
    return data
