"""Template tags for the history charts: `{% history_charts %}` on the overview, and
sparklines on the tasks and queues pages (one read per page, not one per row)."""

from django import template

from worker_admin.history import series
from worker_admin.history.charts import sparkline as spark
from worker_admin.history.page import charts_context

register = template.Library()


@register.inclusion_tag("worker_admin/history/_charts.html", takes_context=True)
def history_charts(context) -> dict:
    request = context.get("request")
    range_key = request.GET.get("range") if request is not None else None
    return charts_context(range_key)


@register.simple_tag
def history_sparklines(kind: str) -> dict:
    """{name: its job count per hour over 24 hours} for kind "task" or "queue"."""
    return series.sparklines(kind)


@register.inclusion_tag("worker_admin/history/_sparkline.html")
def sparkline(lines: dict, name) -> dict:
    values = lines.get(name) if lines and name is not None else None
    return {"spark": spark(values) if values else None, "name": name}
