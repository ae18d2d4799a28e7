"""Helpers for the pages of one thing (an audit entry, a worker) and the overview's stale-worker
card, which lives in its own partial so the overview's view and template stay as they are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django import template
from django.db import DatabaseError

from worker_admin.audit_detail import NOW
from worker_admin.fleet import DEFAULT_THRESHOLD
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities
from worker_admin.views.entities import entity_path
from worker_admin.worker_detail import stale_worker_count

register = template.Library()

VALUE_LENGTH = 300  # characters of a stored value shown inline (a last_error can be pages long)


@register.filter
def audit_value(value: Any, action_time: datetime | None = None) -> str:
    """A value from a before-image or an action: times in ISO UTC to the second, "—" for none,
    long text cut short; NOW is the entry's own time."""
    if value is NOW:
        return f"the action's time ({_iso(action_time)})" if action_time else "the action's time"
    if value is None:
        return "—"
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        try:
            return _iso(datetime.fromisoformat(value))
        except ValueError:
            pass
    text = str(value)
    return text if len(text) <= VALUE_LENGTH else text[:VALUE_LENGTH] + "…"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@register.simple_tag
def entity_url(kind: str, name: str) -> str:
    """The page of a task (kind "task") or a queue ("queue"), its name fully encoded."""
    return entity_path(kind, name)


@register.simple_tag
def stale_workers() -> dict | None:
    """The overview's card: registered workers stale at the workers page's default threshold;
    None when the schema keeps no registrations or cannot be read."""
    try:
        caps = read_capabilities()
        if not caps.usable or not caps.has_workers_table:
            return None
        count = stale_worker_count(
            read_alias(),
            timedelta(minutes=DEFAULT_THRESHOLD),
            has_workers_table=True,
        )
    except DatabaseError:
        return None  # the page around it reports the database's trouble
    return {"count": count, "minutes": DEFAULT_THRESHOLD}
