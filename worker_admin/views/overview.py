"""Overview: the numbers an on-call engineer needs first, refreshed while the tab is visible.

The counts come from one snapshot shared by every viewer and console process
(worker_admin/snapshots.py); a refresh of unchanged counts is answered 304 (views/polling.py).
"""

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import databases
from worker_admin.schema import read_capabilities
from worker_admin.states import JobState
from worker_admin.views.database_health import database_rows, overview_snapshot
from worker_admin.views.polling import shared_fragment

TEMPLATE = "worker_admin/overview.html"


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def overview(request):
    caps = read_capabilities()
    if request.htmx and caps.usable:
        # The refresh: one rendering per interval for every viewer, 304 when what it shows
        # did not change (views/polling.py).
        return shared_fragment(
            request, TEMPLATE + "#overview-body", lambda: _context(request, caps), "overview"
        )
    context = _context(request, caps)
    return render(request, TEMPLATE + ("#overview-body" if request.htmx else ""), context)


def _context(request, caps) -> dict:
    context = {
        "active": "overview",
        "title": "Overview",
        "states": list(JobState),
        "show_history_charts": settings.HISTORY_CHARTS_ON_OVERVIEW,
    }
    if caps.usable:
        snapshot = overview_snapshot(databases.current(), caps.schema)
        context["stats"] = snapshot.value
    if databases.several():
        context["database_rows"], _versions = database_rows(request)
    return context
