"""Filters for the history charts' markup and tables."""

from django import template

register = template.Library()


@register.filter
def chart_value(value) -> str:
    """A chart's number for its table: — where nothing was recorded, else at most 1 decimal."""
    if value is None:
        return "—"
    value = float(value)
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:,.1f}"


@register.filter
def divide(value, by) -> float:
    return float(value) / float(by)
