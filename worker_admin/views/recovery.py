"""Recovery from the Maintenance page: the stale-worker sweep (dry run first), force-unlock
and cleanup. Admins only; each is previewed (the operation in worker_admin/operations/ pins
its targets), confirmed once with the stored confirmation, and audited."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse

from worker_admin import databases
from worker_admin.index_advice import LOCKED, hints
from worker_admin.operations import cleanup as cleanup_operation
from worker_admin.operations import force_unlock as force_unlock_operation
from worker_admin.operations import sweep as sweep_operation
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.operations.rejections import record_rejection
from worker_admin.recovery import CleanupTask
from worker_admin.roles import ADMIN, can_run_maintenance
from worker_admin.views.actions import _forbidden


class SweepForm(forms.Form):
    threshold_minutes = forms.IntegerField(min_value=1, max_value=24 * 60, initial=5)
    delay_seconds = forms.IntegerField(min_value=0, max_value=24 * 3600, initial=30)
    include_node = forms.BooleanField(required=False)


class ForceUnlockForm(forms.Form):
    worker_ids = forms.CharField(
        max_length=50_000,
        widget=forms.Textarea,
        error_messages={"required": "Give at least one worker id."},
    )

    def clean_worker_ids(self) -> list[str]:
        try:  # the operation's own check, so every face refuses the same ids alike
            return force_unlock_operation.worker_ids(self.cleaned_data["worker_ids"])
        except Refused as exc:
            raise forms.ValidationError(str(exc)) from None


class CleanupForm(forms.Form):
    tasks = forms.MultipleChoiceField(
        choices=[(t.value, t.value) for t in CleanupTask], required=False
    )
    keep = forms.CharField(max_length=20_000, required=False, widget=forms.Textarea)
    reason = forms.CharField(max_length=2000, required=False, widget=forms.Textarea)

    def keep_list(self) -> list[str]:
        return [k.strip() for k in self.cleaned_data["keep"].splitlines() if k.strip()]


def _refuse(request, action: str, message: str):
    record_rejection(actor=request.user, via="web", action=action, error=message, data={})
    return render(
        request,
        "worker_admin/error.html",
        {"title": "Nothing was changed", "message": message},
        status=400,
    )


def _guard(request, action: str):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_run_maintenance(request.user):
        return _forbidden(request, action, needs=ADMIN, doing="running maintenance")
    return None


def _failed(request, action: str, exc: Refused):
    """A refused sweep or force-unlock: its sentence; a used confirmation links its entry."""
    record_rejection(actor=request.user, via="web", action=action, error=str(exc), data={})
    context = {"title": "Nothing was changed", "message": str(exc)}
    if isinstance(exc, AlreadyUsed) and exc.entry is not None:
        context["link"] = reverse("worker_admin:audit") + f"?action={action}"
        context["link_text"] = f"Audit entry #{exc.entry.pk}"
    return render(
        request, "worker_admin/error.html", context, status=403 if exc.status == 403 else 400
    )


def sweep(request):
    """First post: the dry run (operations/sweep.py pins the jobs and workers); the second,
    with its token and a reason, releases exactly those once."""
    if (refusal := _guard(request, "sweep")) is not None:
        return refusal
    try:
        if "token" not in request.POST:
            form = SweepForm(request.POST)
            if not form.is_valid():
                raise Refused(" ".join(e for es in form.errors.values() for e in es))
            data = form.cleaned_data
            shown = sweep_operation.preview(
                request.user,
                timedelta(minutes=data["threshold_minutes"]),
                timedelta(seconds=data["delay_seconds"]),
                data["include_node"],
                index_budget=True,
                name_replacements=False,  # asked by the page once shown: sweep_replacements
            )
            context = {
                "active": "maintenance",
                "title": "Sweep stale workers: dry run",
                "index_hints": hints(databases.current().alias, LOCKED),
                "can_maintain": True,  # a sweep is a maintenance action
            }
            return render(request, "worker_admin/sweep_preview.html", context | {"p": shown})
        result = sweep_operation.apply(
            request.user, request.POST["token"], reason=request.POST.get("reason", "")
        )
    except Refused as exc:
        return _failed(request, "sweep", exc)
    messages.success(request, f"Sweep: {result.summary}.")
    return redirect("worker_admin:maintenance")


def sweep_replacements(request):
    """The dry run's page asks, once shown, which jobs took the keys of the superseded jobs it
    lists (read-only; a lookup no index serves, so it is not part of the dry run itself)."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    try:
        ids = _job_ids(request.GET.get("ids", ""))
        named = sweep_operation.replacements(ids)
    except Refused as exc:
        return render(request, "worker_admin/_sweep_replacements.html", {"error": exc}, status=400)
    context = {"ids": ids, "named": named, "budget_seconds": f"{sweep_operation.LOOKUP_SECONDS:g}"}
    return render(request, "worker_admin/_sweep_replacements.html", context)


def _job_ids(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(part.isdigit() and len(part) < 19 for part in parts):
        raise Refused("ids must be job ids (whole numbers) separated by commas.")
    return sorted({int(part) for part in parts})


def force_unlock(request):
    """First post: the preview (the locks pinned, rows, warnings); the second, with its token
    and a reason, releases exactly those once."""
    if (refusal := _guard(request, "force_unlock")) is not None:
        return refusal
    try:
        if "token" not in request.POST:
            form = ForceUnlockForm(request.POST)
            if not form.is_valid():
                raise Refused(" ".join(e for es in form.errors.values() for e in es))
            shown = force_unlock_operation.preview(request.user, form.cleaned_data["worker_ids"])
            context = {"active": "maintenance", "title": "Force-unlock: preview", "p": shown}
            return render(request, "worker_admin/force_unlock_preview.html", context)
        result = force_unlock_operation.apply(
            request.user, request.POST["token"], reason=request.POST.get("reason", "")
        )
    except Refused as exc:
        return _failed(request, "force_unlock", exc)
    messages.success(request, f"Force-unlock: {result.summary}.")
    return redirect("worker_admin:workers")


def cleanup(request):
    """First post: the preview (rows pinned, a reason required to delete jobs); the second,
    with its token, applies exactly that preview once (operations/cleanup.py)."""
    if (refusal := _guard(request, "cleanup")) is not None:
        return refusal
    form = CleanupForm(request.POST)
    if not form.is_valid():
        return _refuse(request, "cleanup", " ".join(e for es in form.errors.values() for e in es))
    try:
        if "token" not in request.POST:
            shown = cleanup_operation.preview(
                request.user,
                form.cleaned_data["tasks"],
                form.keep_list(),
                form.cleaned_data["reason"],
            )
            context = {"active": "maintenance", "title": "Clean up: preview", "preview": shown}
            return render(request, "worker_admin/cleanup_preview.html", context)
        result = cleanup_operation.apply(request.user, request.POST["token"], via="web")
    except Refused as exc:
        return _refuse(request, "cleanup", str(exc))
    messages.success(request, f"Cleanup: {result.summary}.")
    return redirect("worker_admin:maintenance")
