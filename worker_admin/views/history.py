"""History: the charts of what the console recorded (worker_admin/history), and the recent
snapshots themselves."""

from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from worker_admin.history.page import charts_context, recent_snapshots


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def history(request):
    context = {"active": "history", "title": "History"}
    context.update(charts_context(request.GET.get("range")))
    context["snapshots"] = recent_snapshots()
    return render(request, "worker_admin/history.html", context)


@require_safe
def history_charts(request):
    """The charts alone: the overview's range links and its refresh swap them in place."""
    context = charts_context(request.GET.get("range"))
    context["fragment"] = True
    current = (request.htmx.current_url_abs_path or "") if request.htmx else ""
    if current.startswith(reverse("worker_admin:history")):
        context["active"] = "history"  # swapped into the history page: no link to itself
    return render(request, "worker_admin/history/_charts.html", context)
