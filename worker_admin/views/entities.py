"""One page per task and per queue: its jobs by state now (counted as the tasks and queues pages
count them), its oldest ready job, a queue's lock, and its recorded history as charts."""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from worker_admin import catalog
from worker_admin.history import series
from worker_admin.history.charts import group_charts
from worker_admin.history.entity_series import read_group
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities

# The schema's checks allow 128 characters in a task identifier or a queue name.
MAX_NAME_LENGTH = 128
STATES = ("ready", "scheduled", "locked", "failed", "retrying")


def entity_path(kind: str, name: str) -> str:
    """The page of task or queue `name`, every character of the name percent-encoded.

    `{% url %}` leaves "/" as it is, and a browser then resolves "daily/../weekly" in a name
    as path segments (another page); with "/" encoded the name stays one segment, and the
    server decodes it back. Only a name that is exactly "." or ".." still cannot be linked.
    """
    listing = reverse("worker_admin:tasks" if kind == "task" else "worker_admin:queues")
    return f"{listing}{quote(name, safe='')}/"


def _checked(kind: str, name: str) -> None:
    if len(name) > MAX_NAME_LENGTH or "\x00" in name:
        raise Http404(
            f"There is no {kind} with this name: it is longer than {MAX_NAME_LENGTH} "
            "characters or holds a NUL, which the schema never allows."
        )


def _render(request, kind: str, name: str, report, row) -> object:
    range_ = series.parse_range(request.GET.get("range"))
    history = read_group(kind, name, range_)
    context = {
        "active": f"{kind}s",
        "title": f"{kind.capitalize()} {name[:80]}",
        "kind": kind,
        "name": name,
        "report": report,
        "row": row,
        "states": STATES,
        "history": history,
        "charts": group_charts(history),
        "ranges": list(series.RANGES.values()),
        "top_groups": settings.HISTORY_TOP_GROUPS,
        "history_interval": settings.HISTORY_COUNTS_INTERVAL_SECONDS,
    }
    template = "worker_admin/entity.html"
    if request.htmx and request.headers.get("HX-Target") == "entity-body":
        template += "#entity-body"
    return render(request, template, context)


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def task_page(request, identifier: str):
    if not read_capabilities().usable:
        return render(request, "worker_admin/entity.html", {"active": "tasks", "kind": "task"})
    _checked("task", identifier)
    report, row = catalog.task_row(read_alias(), identifier)
    if row is None:
        raise Http404(
            f"No task “{identifier[:200]}” is known to this schema: no job with this identifier "
            "was ever added, or its row was removed by the unused-task cleanup."
        )
    return _render(request, "task", identifier, report, row)


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def queue_page(request, name: str):
    if not read_capabilities().usable:
        return render(request, "worker_admin/entity.html", {"active": "queues", "kind": "queue"})
    _checked("queue", name)
    report, row = catalog.queue_row(read_alias(), name)
    if row is None:
        raise Http404(
            f"No queue “{name[:200]}” exists in this schema: no job named it, or the "
            "unused-queue cleanup removed its row once its last job was gone."
        )
    return _render(request, "queue", name, report, row)
