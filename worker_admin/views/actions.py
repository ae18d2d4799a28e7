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

from worker_admin.actions import (
    ACTIONS,
    MAX_EXPLICIT_IDS,
    ActionKind,
    ActionRefused,
    ActionRequest,
    Target,
    build_preview,
    execute,
    forget_progress,
    load_progress,
    record_rejection,
    redeem_token,
    save_progress,
)
from worker_admin.filters import parse_filters
from worker_admin.forms_actions import RescheduleForm, reschedule_form
from worker_admin.roles import OPERATOR, can_act_on_jobs, refusal
from worker_admin.schema import capabilities

REASON_MAX = 2_000


def _forbidden(request, action: str, *, needs: str = OPERATOR, doing: str = "changing jobs"):
    why = refusal(request.user, needs=needs, doing=doing)
    record_rejection(
        actor=request.user, via="web", action=action, error=f"forbidden: {why}", data={}
    )
    return render(
        request, "worker_admin/error.html", {"title": "Not allowed", "message": why}, status=403
    )


def _ids(values: list[str]) -> tuple[int, ...]:
    if len(values) > MAX_EXPLICIT_IDS:
        raise ActionRefused(
            f"{len(values):,} ids were sent; pick at most {MAX_EXPLICIT_IDS:,} rows, or act on "
            "all jobs matching a filter."
        )
    ids: list[int] = []
    for value in values:
        # isascii: "¹" and "①" are digits to str.isdigit() but not to int().
        if not (value.isascii() and value.isdigit()) or len(value) > 18 or int(value) < 1:
            shown = value[:30]
            raise ActionRefused(f"“{shown}” is not a job id.")
        if int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise ActionRefused("No jobs were chosen: tick some rows, or act on all matching jobs.")
    return tuple(ids)


def _parse(request) -> ActionRequest:
    try:
        kind = ActionKind(request.POST.get("action", ""))
    except ValueError:
        raise ActionRefused("Unknown action; choose one from the list.") from None
    if request.POST.get("scope") == "filter":
        filters = parse_filters(request.GET)
        if filters.problems:
            raise ActionRefused("The filter has invalid values: " + " ".join(filters.problems))
        target = Target(filters=filters)
    else:
        target = Target(ids=_ids(request.POST.getlist("ids")))
    if kind is ActionKind.REMOVE and (target.is_filter or len(target.ids) != 1):
        raise ActionRefused("Remove by key works on one job at a time.")
    reason = request.POST.get("reason", "").strip()
    if len(reason) > REASON_MAX or "\x00" in reason:
        raise ActionRefused(f"The reason must be at most {REASON_MAX:,} characters of text.")
    options = None
    if kind is ActionKind.RESCHEDULE and request.POST.get("has_options"):
        form = RescheduleForm(request.POST)
        if not form.is_valid():
            raise ActionRefused(" ".join(e for errs in form.errors.values() for e in errs))
        options = form.options()
    return ActionRequest(kind=kind, target=target, reason=reason, options=options)


def _back(action_request: ActionRequest, request) -> str:
    ids = action_request.target.ids
    if not action_request.target.is_filter and len(ids) == 1:
        return reverse("worker_admin:job_detail", args=[ids[0]])
    filters = action_request.target.filters or parse_filters(request.GET)
    query = urlencode(filters.query(cursor=None))
    return reverse("worker_admin:jobs") + (f"?{query}" if query else "")


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
        if action_request.kind is ActionKind.RESCHEDULE and action_request.options is None:
            return _render_preview(request, action_request, preview=None)
        if "token" not in request.POST:
            return _render_preview(
                request, action_request, build_preview(action_request, request.session)
            )
        info = ACTIONS[action_request.kind]
        if info.destructive and not action_request.reason:
            raise ActionRefused(
                f"Give a reason to {info.verb} these jobs; it goes in the audit log."
            )
        nonce = redeem_token(request.POST["token"], action_request.fingerprint(), request.session)
        # Inside the try: a second request with the same confirmation is refused here.
        outcome = execute(
            action_request,
            actor=request.user,
            budget_seconds=settings.ACTION_STEP_SECONDS,
            confirmation=nonce,
        )
    except ActionRefused as exc:
        record_rejection(
            actor=request.user,
            via="web",
            action=action_name,
            error=str(exc),
            data={
                k: v for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken", "token")
            },
        )
        return render(
            request,
            "worker_admin/error.html",
            {"title": "Nothing was changed", "message": str(exc)},
            status=400,
        )
    return _after_step(request, action_request, outcome)


def continue_action(request):
    """The next step of a long bulk action (posted by the progress page, or its button)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_act_on_jobs(request.user):
        return _forbidden(request, "continue")
    batch = request.POST.get("batch", "")[:40]
    try:
        action_request, outcome = load_progress(request.session, batch)
    except ActionRefused as exc:
        return render(
            request,
            "worker_admin/error.html",
            {"title": "Nothing to continue", "message": str(exc)},
            status=400,
        )
    outcome = execute(
        action_request,
        actor=request.user,
        outcome=outcome,
        budget_seconds=settings.ACTION_STEP_SECONDS,
    )
    return _after_step(request, action_request, outcome)


def _after_step(request, action_request: ActionRequest, outcome):
    if not outcome.done:
        save_progress(request.session, action_request, outcome)
        context = {
            "active": "jobs",
            "title": f"{ACTIONS[action_request.kind].label}: in progress",
            "info": ACTIONS[action_request.kind],
            "outcome": outcome,
            "total": None if action_request.target.is_filter else len(action_request.target.ids),
        }
        template = "worker_admin/action_progress.html"
        if request.htmx:
            template += "#action-progress"
        return render(request, template, context)
    forget_progress(request.session, outcome.batch)
    text = f"{ACTIONS[action_request.kind].label}: {outcome.summary}."
    if outcome.error:
        messages.error(request, f"{text} Stopped by an error: {outcome.error}")
    elif outcome.skipped or outcome.missing:
        messages.warning(request, text)
    else:
        messages.success(request, text)
    back = _back(action_request, request)
    if request.htmx:  # the progress page polls with htmx: send the browser on
        return HttpResponseClientRedirect(back)
    return redirect(back)


def _render_preview(request, action_request: ActionRequest, preview):
    context = {
        "active": "jobs",
        "title": f"Preview: {ACTIONS[action_request.kind].label}",
        "info": ACTIONS[action_request.kind],
        "action": action_request,
        "preview": preview,
        "ids": action_request.target.ids,
        "scope": "filter" if action_request.target.is_filter else "ids",
        "query": request.GET.urlencode(),
        "reschedule_form": reschedule_form(request.POST, action_request.target.ids),
        "back_url": _back(action_request, request),
        "reason_required": ACTIONS[action_request.kind].destructive,
    }
    return render(request, "worker_admin/action_preview.html", context)
