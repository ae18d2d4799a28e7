"""Overview: the numbers an on-call engineer needs first, refreshed while the tab is visible.

The counts come from one snapshot shared by every viewer and console process
(worker_admin/snapshots.py); a refresh of unchanged counts is answered 304 (views/polling.py).
"""

from functools import partial

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import databases
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities
from worker_admin.states import JobState
from worker_admin.stats import is_large
from worker_admin.views.database_health import database_rows, overview_snapshot
from worker_admin.views.polling import live_page

TEMPLATE = "worker_admin/overview.html"


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def overview(request):
    caps = read_capabilities()
    if not caps.usable:
        context = _context(request, caps)
        return render(request, TEMPLATE + ("#overview-body" if request.htmx else ""), context)
    # One rendering of the counts per interval for every viewer: a refresh gets it (304 when
    # what it shows did not change), and so does the full page, which on a large table nobody
    # has watched for a while shows itself at once and brings the counts with its first refresh.
    build = partial(_context, request, caps)
    slow = not request.htmx and is_large(read_alias())  # (a refresh reads no catalog)
    return live_page(request, TEMPLATE, "overview-body", build, _page(caps), slow=slow)


def _page(caps) -> dict:
    return {
        "active": "overview",
        "title": "Overview",
        "states": list(JobState),
        "show_history_charts": settings.HISTORY_CHARTS_ON_OVERVIEW,
    }


def _context(request, caps) -> dict:
    context = _page(caps)
    if caps.usable:
        snapshot = overview_snapshot(databases.current(), caps.schema)
        context["stats"] = snapshot.value
    if databases.several():
        context["database_rows"], _versions = database_rows(request)
    return context
