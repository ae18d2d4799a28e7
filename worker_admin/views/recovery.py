"""Recovery from the Maintenance page: the stale-worker sweep (dry run first), force-unlock
and cleanup. Admins only; each is previewed, confirmed with a one-time token, and audited."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render

from worker_admin import audit
from worker_admin.actions import (
    ActionRefused,
    acting_once,
    issue_token,
    record_rejection,
    redeem_token,
)
from worker_admin.fleet import FRESH_HEARTBEAT
from worker_admin.models import Job, JobQueue, Worker
from worker_admin.operations import cleanup as cleanup_operation
from worker_admin.operations.errors import Refused
from worker_admin.recovery import CleanupTask, SweepStaleWorkersOptions
from worker_admin.roles import ADMIN, can_run_maintenance
from worker_admin.stats import database_now
from worker_admin.utils import WorkerUtils, WorkerUtilsError
from worker_admin.views.actions import _forbidden

# The dry run's page lists this many of the jobs a sweep would recover (and counts them all).
DRY_RUN_ROWS = 200


class SweepForm(forms.Form):
    threshold_minutes = forms.IntegerField(min_value=1, max_value=24 * 60, initial=5)
    delay_seconds = forms.IntegerField(min_value=0, max_value=24 * 3600, initial=30)
    include_node = forms.BooleanField(required=False)

    def options(self, *, dry_run: bool) -> SweepStaleWorkersOptions:
        data = self.cleaned_data
        return SweepStaleWorkersOptions(
            sweep_threshold=timedelta(minutes=data["threshold_minutes"]),
            recovery_delay=timedelta(seconds=data["delay_seconds"]),
            dry_run=dry_run,
            include_node_lock_holders=data["include_node"],
        )


class ForceUnlockForm(forms.Form):
    worker_ids = forms.CharField(
        max_length=50_000,
        widget=forms.Textarea,
        error_messages={"required": "Give at least one worker id."},
    )

    def clean_worker_ids(self) -> list[str]:
        ids = []
        for line in self.cleaned_data["worker_ids"].replace(",", "\n").splitlines():
            if line.strip() and line.strip() not in ids:
                ids.append(line.strip())
        if not ids:
            raise forms.ValidationError("Give at least one worker id.")
        if len(ids) > 1000 or any(len(i) > 1000 for i in ids):
            raise forms.ValidationError("At most 1,000 worker ids of up to 1,000 characters.")
        return ids


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


def sweep(request):
    if (refusal := _guard(request, "sweep")) is not None:
        return refusal
    form = SweepForm(request.POST)
    if not form.is_valid():
        return _refuse(request, "sweep", " ".join(e for es in form.errors.values() for e in es))
    fingerprint = "sweep:" + ":".join(str(form.cleaned_data[k]) for k in sorted(form.fields))
    utils = WorkerUtils()
    try:
        if "token" not in request.POST:
            options = replace(form.options(dry_run=True), list_limit=DRY_RUN_ROWS)
            result = utils.sweep_stale_workers(options)
            context = {
                "active": "maintenance",
                "title": "Sweep stale workers: dry run",
                "result": result,
                "form": form,
                "token": issue_token(fingerprint, request.session),
            }
            return render(request, "worker_admin/sweep_preview.html", context)
        nonce = redeem_token(request.POST["token"], fingerprint, request.session)
        # The sweep and its audit entry in one transaction, acted on once per confirmation.
        with acting_once(nonce, actor=request.user, via="web", action="sweep"):
            result = utils.sweep_stale_workers(form.options(dry_run=False))
            audit.record(
                actor=request.user,
                via="web",
                action="sweep",
                outcome="done",
                reason=request.POST.get("reason", "").strip()[:2000],
                parameters=form.cleaned_data
                | {"worker_ids": result.worker_ids, "confirmation": nonce},
                requested_ids=[job.id for job in result.jobs],
                changed_ids=result.changed_job_ids,
                summary=result.summary,
            )
    except (ActionRefused, WorkerUtilsError) as exc:
        return _refuse(request, "sweep", str(exc))
    messages.success(request, f"Sweep: {result.summary}.")
    return redirect("worker_admin:maintenance")


def force_unlock(request):
    if (refusal := _guard(request, "force_unlock")) is not None:
        return refusal
    form = ForceUnlockForm(request.POST)
    if not form.is_valid():
        return _refuse(
            request, "force_unlock", " ".join(e for es in form.errors.values() for e in es)
        )
    ids = form.cleaned_data["worker_ids"]
    fingerprint = "force_unlock:" + "\n".join(ids)
    try:
        if "token" not in request.POST:
            return _force_unlock_preview(request, ids, issue_token(fingerprint, request.session))
        nonce = redeem_token(request.POST["token"], fingerprint, request.session)
        with acting_once(nonce, actor=request.user, via="web", action="force_unlock"):
            result = WorkerUtils().force_unlock_workers(ids)
            audit.record(
                actor=request.user,
                via="web",
                action="force_unlock",
                outcome="done",
                reason=request.POST.get("reason", "").strip()[:2000],
                parameters={
                    "worker_ids": ids,
                    "queues_unlocked": result.queues_unlocked,
                    "confirmation": nonce,
                },
                requested_ids=result.jobs_unlocked,
                changed_ids=result.jobs_unlocked,
                summary=result.summary,
            )
    except (ActionRefused, WorkerUtilsError) as exc:
        return _refuse(request, "force_unlock", str(exc))
    messages.success(request, f"Force-unlock: {result.summary}.")
    return redirect("worker_admin:workers")


def _force_unlock_preview(request, ids: list[str], token: str):
    alias = settings.WORKER_DATABASE
    now = database_now(alias)
    fresh = [
        w.id
        for w in Worker.objects.using(alias).filter(id__in=ids)
        if now - w.last_heartbeat_at < FRESH_HEARTBEAT
    ]
    context = {
        "active": "maintenance",
        "title": "Force-unlock: preview",
        "ids": ids,
        "jobs": list(
            Job.objects.using(alias)
            .filter(locked_by__in=ids)
            .select_related("task")
            .order_by("locked_at")[:200]
        ),
        "job_count": Job.objects.using(alias).filter(locked_by__in=ids).count(),
        "queues": list(JobQueue.objects.using(alias).filter(locked_by__in=ids)),
        "fresh": fresh,
        "now": now,
        "token": token,
    }
    return render(request, "worker_admin/force_unlock_preview.html", context)


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
