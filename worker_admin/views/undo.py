"""Undo an audited action: a preview of what the undo will do, then the undo, audited."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render

from worker_admin.actions import ActionRefused, issue_token, record_rejection, redeem_token
from worker_admin.audit import AuditEntry
from worker_admin.roles import can_act_on_jobs
from worker_admin.undo import CannotUndo, execute, plan
from worker_admin.views.actions import _forbidden


def undo_entry(request, entry_id: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_act_on_jobs(request.user):
        return _forbidden(request, "undo", doing="undoing a change to jobs")
    entry = get_object_or_404(AuditEntry, pk=entry_id)
    try:
        undo = plan(entry)
        if "token" not in request.POST:
            token = issue_token(undo.fingerprint, request.session)
            context = {"active": "audit", "title": "Undo", "undo": undo, "token": token}
            return render(request, "worker_admin/undo_preview.html", context)
        redeem_token(request.POST["token"], undo.fingerprint, request.session)
        done = execute(undo, actor=request.user)
    except (CannotUndo, ActionRefused) as exc:
        record_rejection(
            actor=request.user,
            via="web",
            action=f"undo_{entry.action}",
            error=str(exc),
            data={"undo_of": entry.pk},
        )
        return render(
            request,
            "worker_admin/error.html",
            {"title": "Nothing was changed", "message": str(exc)},
            status=400,
        )
    messages.success(request, f"Undo of #{entry.pk}: {done.summary}.")
    return redirect("worker_admin:audit")
