"""Undo an audited action: the page face of operations/undo (a preview of each job now ->
after the undo, then the undo, once, audited)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render

from worker_admin.audit import AuditEntry
from worker_admin.operations import undo
from worker_admin.operations.errors import AlreadyUsed, NotFound, Refused
from worker_admin.operations.rejections import record_rejection
from worker_admin.roles import can_act_on_jobs
from worker_admin.views.actions import _entry_url, _forbidden


def undo_entry(request, entry_id: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_act_on_jobs(request.user):
        return _forbidden(request, "undo", doing="undoing a change to jobs")
    try:
        if "token" not in request.POST:
            shown = undo.preview(request.user, entry_id)
            context = {"active": "audit", "title": "Undo", "undo": shown}
            return render(request, "worker_admin/undo_preview.html", context)
        done = undo.apply(request.user, request.POST["token"], via="web")
    except Refused as exc:
        return _refused(request, entry_id, exc)
    messages.success(request, f"Undo of #{done.entry_id}: {done.summary}.")
    return redirect("worker_admin:audit")


def _refused(request, entry_id: int, exc: Refused):
    undone = AuditEntry.objects.filter(pk=entry_id).values_list("action", flat=True).first()
    record_rejection(
        actor=request.user,
        via="web",
        action=f"undo_{undone}" if undone else "undo",
        error=str(exc),
        data={"undo_of": entry_id},
    )
    context = {"title": "Nothing was changed", "message": str(exc)}
    if isinstance(exc, AlreadyUsed) and exc.entry is not None:
        context["link"] = _entry_url(exc.entry)
        context["link_text"] = f"Audit entry #{exc.entry.pk}"
    status = 404 if isinstance(exc, NotFound) else 400
    return render(request, "worker_admin/error.html", context, status=status)
