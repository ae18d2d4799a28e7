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
from worker_admin.views.polling import page_fragment, shared_fragment

TEMPLATE = "worker_admin/overview.html"
BODY = TEMPLATE + "#overview-body"


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def overview(request):
    caps = read_capabilities()
    if not caps.usable:
        context = _context(request, caps)
        return render(request, TEMPLATE + ("#overview-body" if request.htmx else ""), context)
    build = partial(_context, request, caps)
    if request.htmx:
        # The refresh: one rendering per interval for every viewer, 304 when what it shows
        # did not change (views/polling.py).
        return shared_fragment(request, BODY, build, "overview")
    # The full page shows the same rendering its refreshes share; on a large table nobody has
    # watched for a while, it shows itself at once and its first refresh brings the counts.
    body = page_fragment(request, BODY, build, "overview", slow=is_large(read_alias()))
    context = _page(caps) | {"live_body": body, "counting": body is None}
    return render(request, TEMPLATE, context)


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
