"""Failures: failed and retrying jobs grouped by task and normalised error message."""

from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import failures
from worker_admin.index_advice import FAILING, guarded
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def failure_groups(request):
    context = {"active": "failures", "title": "Failures", "states": list(failures.FailureState)}
    if read_capabilities().usable:
        task = request.GET.get("task", "").strip()[:128]
        if "\x00" in task:  # PostgreSQL text cannot hold NUL: no task has it in its name
            context["problem"] = "Ignored the task filter: it contains a NUL character."
            task = ""
        state = failures.FailureState.parse(request.GET.get("state", ""))
        context.update(
            filters={"task": task, "state": state.value},
            filtered=bool(task) or state != failures.FailureState.BOTH,
            usable=True,
        )
        try:
            with guarded(read_alias(), FAILING, reading="the failing jobs"):
                context["report"] = failures.failure_groups(read_alias(), task=task, state=state)
        except failures.FailureGroupingTooSlow:
            context["too_slow"] = True
    template = "worker_admin/failures.html"
    if request.htmx:
        template += "#failure-groups"
    return render(request, template, context)
