"""Small display helpers: durations an operator reads at a glance, compact counts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django import template
from django.utils import timezone

register = template.Library()

_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


@register.filter
def duration(value: timedelta | None) -> str:
    """'2d 3h', '4h 12m', '3m 5s', '12s': the two largest units, never more."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        amount, seconds = divmod(seconds, size)
        if amount or parts:
            parts.append(f"{amount}{unit}")
        if len(parts) == 2:
            break
    parts = [p for p in parts if not p.startswith("0")] or parts[:1]
    return sign + " ".join(parts)


@register.simple_tag
def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago `moment` was, against the database clock when the view passes it."""
    if moment is None:
        return "—"
    return duration((now or timezone.now()) - moment)


@register.simple_tag
def until(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "—"
    delta = moment - (now or timezone.now())
    return f"in {duration(delta)}" if delta.total_seconds() > 0 else f"{duration(-delta)} ago"


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def json_size(value) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


@register.filter
def get_count(counts, state) -> int:
    return counts.of(state)


@register.filter
def get_item(mapping, key):
    return mapping.get(key, 0)


@register.filter
def percent(fraction: float | None) -> str:
    if fraction is None:
        return "100%"
    value = fraction * 100
    return f"{value:.1f}%" if value < 10 else f"{value:.0f}%"


@register.filter
def utc_iso(moment: datetime | None) -> str:
    """2026-12-04T09:30:00Z, as the reschedule form takes it."""
    from worker_admin.forms_actions import utc_iso as to_utc_iso

    return to_utc_iso(moment) if moment else "—"


@register.filter
def estimate(counts, name) -> str:
    """A count as the console knows it: "1,234" when exact, "~3.7M ± 4 %" (or "fewer than
    150k", "more than 10,000") when estimated, with its 95 % interval in the title."""
    from django.utils.html import format_html

    value = counts.estimate(str(name))
    if value.exact:
        return format_html("{}", f"{value.value:,}")
    return format_html(
        '<span class="estimate" title="{}">{}</span>', value.explanation, value.display
    )


@register.simple_tag(takes_context=True)
def database_switcher(context) -> list[dict]:
    """The databases the signed-in user may open, with the current section's URL in each
    ([] with one database: the header then shows only the schema)."""
    from worker_admin.context_processors import database_switcher as switcher

    request = context.get("request")
    return switcher(request, context.get("active")) if request is not None else []
