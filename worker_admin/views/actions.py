"""Job actions: POST once for a preview, POST again with its token to do it.

Only operators (and admins) may act, and never when READ_ONLY is set: the check is here, at
the server, whatever the templates show. Every refusal is audited as a rejected attempt.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from worker_admin import databases
from worker_admin.filters import parse_filters
from worker_admin.forms_actions import RescheduleForm, reschedule_form
from worker_admin.models import Job
from worker_admin.operations import job_actions as ops
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.operations.rejections import record_rejection
from worker_admin.roles import OPERATOR, can_act_on_jobs, refusal
from worker_admin.schema import capabilities


def _forbidden(request, action: str, *, needs: str = OPERATOR, doing: str = "changing jobs"):
    why = refusal(request.user, needs=needs, doing=doing)
    record_rejection(
        actor=request.user, via="web", action=action, error=f"forbidden: {why}", data={}
    )
    return render(
        request, "worker_admin/error.html", {"title": "Not allowed", "message": why}, status=403
    )


def _parse(request) -> ops.ActionRequest:
    """The form as the operation's request; the operation checks the values."""
    kind = ops.action_kind(request.POST.get("action", ""))
    if request.POST.get("scope") == "filter":
        target = ops.filter_target(parse_filters(request.GET))
    else:
        target = ops.Target(ids=ops.parse_ids(request.POST.getlist("ids")))
    options = None
    if kind is ops.ActionKind.RESCHEDULE and request.POST.get("has_options"):
        form = RescheduleForm(request.POST)
        if not form.is_valid():
            raise Refused(" ".join(e for errs in form.errors.values() for e in errs))
        data = form.cleaned_data
        options = ops.reschedule_options(
            data.get("run_at"), data.get("priority"), data.get("attempts"), data.get("max_attempts")
        )
    reason = request.POST.get("reason", "")
    return ops.build_request(kind, target, reason=reason, options=options)


def _back(action_request: ops.ActionRequest, request) -> str:
    ids = action_request.target.ids
    if not action_request.target.is_filter and len(ids) == 1:
        return reverse("worker_admin:job_detail", args=[ids[0]])
    filters = action_request.target.filters or parse_filters(request.GET)
    return _jobs_url(filters.query(cursor=None))


def _jobs_url(query: dict) -> str:
    text = urlencode(query or {})
    return reverse("worker_admin:jobs") + (f"?{text}" if text else "")


def _refused(request, action_name: str, exc: Refused):
    record_rejection(
        actor=request.user,
        via="web",
        action=action_name,
        error=str(exc),
        data={k: v for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken", "token")},
    )
    context = {"title": "Nothing was changed", "message": str(exc)}
    if isinstance(exc, AlreadyUsed) and exc.entry is not None:
        context["link"] = _entry_url(exc.entry)
        context["link_text"] = f"Audit entry #{exc.entry.pk}"
    return render(request, "worker_admin/error.html", context, status=400)


def _entry_url(entry) -> str:
    """The audit log where this entry is (filtered to its action and first job)."""
    query = {"action": entry.action}
    ids = list(entry.requested_ids or []) or list(entry.changed_ids or [])
    if ids:
        query["job"] = ids[0]
    return reverse("worker_admin:audit") + "?" + urlencode(query)


def job_action(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    action_name = request.POST.get("action", "")[:40]
    if not can_act_on_jobs(request.user):
        return _forbidden(request, action_name)
    if not capabilities().usable:
        messages.error(request, capabilities().problem)
        return redirect("worker_admin:jobs")
    try:
        action_request = _parse(request)
        if action_request.kind is ops.ActionKind.RESCHEDULE and action_request.options is None:
            return _render_preview(request, action_request, preview=None)
        if "token" not in request.POST:
            preview = ops.preview(request.user, action_request, index_budget=True)
            return _render_preview(request, action_request, preview)
        info = ops.ACTIONS[action_request.kind]
        if info.destructive and not action_request.reason:
            raise Refused(f"Give a reason to {info.verb} these jobs; it goes in the audit log.")
        outcome = ops.apply(
            request.user,
            request.POST["token"],
            reason=action_request.reason,
            request=action_request,
            budget_seconds=settings.ACTION_STEP_SECONDS,
        )
    except Refused as exc:
        return _refused(request, action_name, exc)
    return _after_step(request, outcome)


def continue_action(request):
    """The next step of a long bulk action (posted by the progress page, or its button)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_act_on_jobs(request.user):
        return _forbidden(request, "continue")
    try:
        outcome = ops.resume(
            request.user,
            request.POST.get("batch", "")[:1000],
            budget_seconds=settings.ACTION_STEP_SECONDS,
        )
    except Refused as exc:
        return render(
            request,
            "worker_admin/error.html",
            {"title": "Nothing to continue", "message": str(exc)},
            status=400,
        )
    return _after_step(request, outcome)


def _after_step(request, outcome: ops.Outcome):
    info = ops.ACTIONS[ops.ActionKind(outcome.kind)]
    if not outcome.done:
        context = {
            "active": "jobs",
            "title": f"{info.label}: in progress",
            "info": info,
            "outcome": outcome,
            "total": None if outcome.filter is not None else outcome.pinned,
        }
        template = "worker_admin/action_progress.html"
        if request.htmx:
            template += "#action-progress"
        return render(request, template, context)
    text = f"{info.label}: {outcome.summary}."
    if outcome.error:
        messages.error(request, f"{text} Stopped by an error: {outcome.error}")
    elif outcome.skipped or outcome.missing or outcome.stale:
        messages.warning(request, text)
    else:
        messages.success(request, text)
    back = _landing(outcome)
    if request.htmx:  # the progress page polls with htmx: send the browser on
        return HttpResponseClientRedirect(back)
    return redirect(back)


def _landing(outcome: ops.Outcome) -> str:
    """Where the result is true: the job's page if the job still exists, else (completed or
    removed) the audit entry that records it; the jobs list a bulk action came from."""
    if outcome.job is None:
        return _jobs_url(outcome.filter or {})
    if Job.objects.using(databases.current().alias).filter(id=outcome.job).exists():
        return reverse("worker_admin:job_detail", args=[outcome.job])
    query = urlencode({"job": outcome.job, "action": outcome.kind})
    return reverse("worker_admin:audit") + f"?{query}"


def _render_preview(request, action_request: ops.ActionRequest, preview):
    info = ops.ACTIONS[action_request.kind]
    context = {
        "active": "jobs",
        "title": f"Preview: {info.label}",
        "info": info,
        "action": action_request,
        "preview": preview,
        "ids": action_request.target.ids,
        "scope": "filter" if action_request.target.is_filter else "ids",
        "query": request.GET.urlencode(),
        "reschedule_form": reschedule_form(request.POST, action_request.target.ids),
        "back_url": _back(action_request, request),
        "reason_required": info.destructive,
    }
    return render(request, "worker_admin/action_preview.html", context)
