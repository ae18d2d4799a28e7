"""Queues and tasks: every queue and task row with its jobs counted by state.

Like the overview, each table is one rendering per interval shared by every viewer with the
same role and filter (views/polling.py): its refreshes are answered from it (304 when unchanged),
and so is the full page, which on a large table nobody watched lately shows itself at once and
brings the counts with its first refresh.
"""

from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import catalog
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities
from worker_admin.stats import is_large
from worker_admin.views.polling import live_page

QUEUES = "worker_admin/queues.html"
TASKS = "worker_admin/tasks.html"


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def queue_list(request):
    context = {"active": "queues", "title": "Queues"}
    if not read_capabilities().usable:
        return render(request, QUEUES + ("#queue-table" if request.htmx else ""), context)
    name = request.GET.get("name", "").strip()[:128]
    if "\x00" in name:  # PostgreSQL text cannot hold NUL: no queue has it in its name
        context["problem"] = "Ignored the name filter: it contains a NUL character."
        name = ""
    context.update(filters={"name": name}, usable=True)
    alias = read_alias()

    def build() -> dict:
        return context | {"report": catalog.queue_report(alias, name_contains=name)}

    slow = not request.htmx and is_large(alias)  # (a refresh reads no catalog)
    return live_page(request, QUEUES, "queue-table", build, context, slow=slow)


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def task_list(request):
    context = {"active": "tasks", "title": "Tasks"}
    if not read_capabilities().usable:
        return render(request, TASKS + ("#task-table" if request.htmx else ""), context)
    context["usable"] = True
    alias = read_alias()

    def build() -> dict:
        return context | {"report": catalog.task_report(alias)}

    slow = not request.htmx and is_large(alias)
    return live_page(request, TASKS, "task-table", build, context, slow=slow)
