"""Overview: the numbers an on-call engineer needs first, refreshed while the tab is visible.

The counts come from one snapshot shared by every viewer and console process
(worker_admin/snapshots.py); a refresh of unchanged counts is answered 304 (views/polling.py).
"""

from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import databases
from worker_admin.schema import capabilities
from worker_admin.states import JobState
from worker_admin.views.database_health import database_rows, overview_snapshot
from worker_admin.views.polling import live_fragment

TEMPLATE = "worker_admin/overview.html"


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def overview(request):
    caps = capabilities()
    context = {"active": "overview", "title": "Overview", "states": list(JobState)}
    versions = []
    if caps.usable:
        snapshot = overview_snapshot(databases.current(), caps.schema)
        context["stats"] = snapshot.value
        versions.append(snapshot.version)
    if databases.several():
        context["database_rows"], row_versions = database_rows(request)
        versions.extend(row_versions)
    if request.htmx and versions:
        return live_fragment(request, TEMPLATE + "#overview-body", context, versions)
    return render(request, TEMPLATE + ("#overview-body" if request.htmx else ""), context)
