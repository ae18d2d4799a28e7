"""Overview: the numbers an on-call engineer needs first, refreshed while the tab is visible."""

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin.schema import capabilities
from worker_admin.states import JobState
from worker_admin.stats import queue_stats


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def overview(request):
    caps = capabilities()
    context = {"active": "overview", "title": "Overview", "states": list(JobState)}
    if caps.usable:
        context["stats"] = queue_stats(settings.WORKER_DATABASE)
    template = "worker_admin/overview.html"
    if request.htmx:
        template += "#overview-body"
    return render(request, template, context)
