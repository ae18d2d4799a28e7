"""Workers: registered heartbeating workers, stale ones, and every lock holder."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin.fleet import DEFAULT_THRESHOLD, fleet
from worker_admin.roles import can_run_maintenance
from worker_admin.schema import capabilities

THRESHOLDS = [1, 2, 5, 10, 15, 30, 60]  # minutes
# A fleet of a thousand workers is a page no one reads: each table shows the rows that need
# attention first (stale workers, the oldest locks) up to this many, and links to the rest.
ROWS_SHOWN = 200


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def workers(request):
    caps = capabilities()
    raw = request.GET.get("threshold", "")
    minutes, problem = DEFAULT_THRESHOLD, None
    if raw.isascii() and raw.isdigit() and len(raw) < 4 and int(raw) in THRESHOLDS:
        minutes = int(raw)
    elif raw:
        problem = f"Ignored the threshold “{raw[:20]}”: choose one of the listed values."
    context = {
        "active": "workers",
        "title": "Workers",
        "thresholds": THRESHOLDS,
        "minutes": minutes,
        "problem": problem,
        "can_maintain": can_run_maintenance(request.user),
    }
    if caps.usable:
        found = fleet(
            settings.WORKER_DATABASE,
            timedelta(minutes=minutes),
            has_workers_table=caps.has_workers_table,
        )
        limit = None if request.GET.get("all") == "1" else ROWS_SHOWN
        context |= {
            "fleet": found,
            "shown_workers": (found.workers or [])[:limit],
            "shown_holders": found.holders[:limit],
            "rows_shown": limit,
        }
    template = "worker_admin/workers.html"
    if request.htmx:
        template += "#workers-body"
    return render(request, template, context)
