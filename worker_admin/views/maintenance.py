"""Maintenance: the schema's flavour and migrations, and the recovery extension.

Adding the recovery objects is a schema change: admins only, previewed, audited.
(Sweeps, force-unlocks and cleanups join this page with the recovery work.)
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.views.decorators.http import require_safe

from worker_admin import audit
from worker_admin.actions import ActionRefused, issue_token, record_rejection, redeem_token
from worker_admin.installer import RECOVERY_FUNCTIONS, Flavour, UnsupportedSchemaError
from worker_admin.models import Migration
from worker_admin.roles import ADMIN, can_run_maintenance
from worker_admin.schema import capabilities
from worker_admin.utils import WorkerUtils
from worker_admin.views.actions import _forbidden

ADD_RECOVERY = "add_recovery"


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def maintenance(request):
    caps = capabilities()
    migrations = []
    if caps.flavour in (Flavour.NODE, Flavour.RUST_RECOVERY) and caps.can_read_jobs:
        migrations = list(Migration.objects.using(settings.WORKER_DATABASE).order_by("-id")[:30])
    context = {
        "active": "maintenance",
        "title": "Maintenance",
        "migrations": migrations,
        "recovery_functions": RECOVERY_FUNCTIONS,
        "can_maintain": can_run_maintenance(request.user),
        "needs_recovery": caps.flavour is Flavour.NODE,
    }
    return render(request, "worker_admin/maintenance.html", context)


def add_recovery(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_run_maintenance(request.user):
        return _forbidden(request, ADD_RECOVERY, needs=ADMIN, doing="adding the recovery objects")
    fingerprint = f"{ADD_RECOVERY}:{settings.GRAPHILE_WORKER_SCHEMA}"
    if "token" not in request.POST:
        if capabilities().flavour is not Flavour.NODE:
            messages.info(request, "Nothing to add: the recovery extension is not missing.")
            return redirect("worker_admin:maintenance")
        context = {
            "active": "maintenance",
            "title": "Add the worker-recovery objects",
            "token": issue_token(fingerprint, request.session),
            "recovery_functions": RECOVERY_FUNCTIONS,
        }
        return render(request, "worker_admin/add_recovery_preview.html", context)
    try:
        redeem_token(request.POST["token"], fingerprint, request.session)
    except ActionRefused as exc:
        return _add_recovery_refused(request, exc, status=400)
    try:
        added = WorkerUtils().add_recovery()
    except UnsupportedSchemaError as exc:  # e.g. a 0.16/0.17 database: nothing was changed
        return _add_recovery_refused(request, exc, status=409)
    summary = (
        "added _private_workers and the six recovery functions"
        if added
        else "the recovery objects were already present; nothing changed"
    )
    audit.record(
        actor=request.user,
        via="web",
        action=ADD_RECOVERY,
        outcome="done",
        reason=request.POST.get("reason", "").strip()[:2000],
        parameters={"schema": settings.GRAPHILE_WORKER_SCHEMA},
        summary=summary,
    )
    messages.success(request, f"Recovery extension: {summary}.")
    return redirect("worker_admin:maintenance")


def _add_recovery_refused(request, exc: Exception, *, status: int):
    """Audited as rejected, and said in one sentence: nothing was changed."""
    record_rejection(actor=request.user, via="web", action=ADD_RECOVERY, error=str(exc), data={})
    return render(
        request,
        "worker_admin/error.html",
        {"title": "Nothing was changed", "message": str(exc)},
        status=status,
    )
