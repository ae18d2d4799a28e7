"""Queues and tasks: every queue and task row with its jobs counted by state."""

from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import catalog
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def queue_list(request):
    context = {"active": "queues", "title": "Queues"}
    if read_capabilities().usable:
        name = request.GET.get("name", "").strip()[:128]
        if "\x00" in name:  # PostgreSQL text cannot hold NUL: no queue has it in its name
            context["problem"] = "Ignored the name filter: it contains a NUL character."
            name = ""
        context.update(
            filters={"name": name},
            report=catalog.queue_report(read_alias(), name_contains=name),
        )
    template = "worker_admin/queues.html"
    if request.htmx:
        template += "#queue-table"
    return render(request, template, context)


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def task_list(request):
    context = {"active": "tasks", "title": "Tasks"}
    if read_capabilities().usable:
        context["report"] = catalog.task_report(read_alias())
    template = "worker_admin/tasks.html"
    if request.htmx:
        template += "#task-table"
    return render(request, template, context)
