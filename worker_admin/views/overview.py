"""Overview: the numbers an on-call engineer needs first, refreshed while the tab is visible.

The counts come from one snapshot shared by every viewer and console process
(worker_admin/snapshots.py); a refresh of unchanged counts is answered 304 (views/polling.py).
"""

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import snapshots
from worker_admin.schema import capabilities
from worker_admin.states import JobState
from worker_admin.stats import queue_stats
from worker_admin.views.polling import live_fragment

TEMPLATE = "worker_admin/overview.html"


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def overview(request):
    caps = capabilities()
    context = {
        "active": "overview",
        "title": "Overview",
        "states": list(JobState),
        "show_history_charts": settings.HISTORY_CHARTS_ON_OVERVIEW,
    }
    versions = []
    if caps.usable:
        alias = settings.WORKER_DATABASE
        snapshot = snapshots.shared(
            f"overview:{alias}:{caps.schema}",
            lambda: queue_stats(alias),
            seconds=settings.SHARED_SNAPSHOT_SECONDS,
        )
        context["stats"] = snapshot.value
        versions.append(snapshot.version)
    if request.htmx and versions:
        return live_fragment(request, TEMPLATE + "#overview-body", context, versions)
    return render(request, TEMPLATE + ("#overview-body" if request.htmx else ""), context)
