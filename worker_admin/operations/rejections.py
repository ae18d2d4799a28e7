"""Bad input changes nothing, but the attempt is part of the record."""

from __future__ import annotations

from typing import Any

from worker_admin import audit


def record_rejection(*, actor, via: str, action: str, error: str, data: dict) -> None:
    audit.record(
        actor=actor,
        via=via,
        action=storable(action) or "unknown",
        outcome="rejected",
        parameters={storable(k): storable(v, 500) for k, v in data.items()},
        error=storable(error, 2000),
        summary="rejected; nothing changed",
    )


def storable(value: Any, limit: int | None = None) -> Any:
    """What the audit log can keep of rejected input: PostgreSQL's text and jsonb refuse NUL
    characters (a stand-in shows where one was), and long values are clipped."""
    if not isinstance(value, str):
        if limit is None or len(str(value)) < limit:
            return value
        value = str(value)
    value = value.replace("\x00", "\ufffd")
    return value if limit is None or len(value) < limit else value[:limit] + "…"
