"""Crons: every cron item the database knows or the given crontab holds, and whether it fired."""

from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import crons
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def cron_list(request):
    context = {"active": "crons", "title": "Crons"}
    if read_capabilities().usable:
        context["report"] = crons.cron_report(read_alias())
    template = "worker_admin/crons.html"
    if request.htmx:
        template += "#cron-table"
    return render(request, template, context)
