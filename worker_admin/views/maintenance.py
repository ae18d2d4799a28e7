"""Maintenance: the schema's flavour and migrations, the recovery extension and the opt-in
indexes. Adding the recovery objects and creating or dropping an index are schema changes:
admins only, previewed (the objects; the SQL, size and write cost), applied once, audited, all
through worker_admin/operations/ (this module only turns forms into calls and results into pages).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_safe

from worker_admin import databases, indexes
from worker_admin.installer import RECOVERY_FUNCTIONS, Flavour
from worker_admin.models import Migration
from worker_admin.operations import indexes as index_operation
from worker_admin.operations import recovery_objects
from worker_admin.operations.errors import AlreadyUsed, Refused, Stale
from worker_admin.operations.rejections import record_rejection
from worker_admin.roles import can_run_maintenance
from worker_admin.schema import capabilities

ADD_RECOVERY = recovery_objects.ACTION


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def maintenance(request):
    caps = capabilities()
    migrations, index_rows = [], []
    if caps.flavour in (Flavour.NODE, Flavour.RUST_RECOVERY) and caps.can_read_jobs:
        migrations = list(Migration.objects.using(databases.current().alias).order_by("-id")[:30])
        index_rows = indexes.status(databases.current().alias, settings.GRAPHILE_WORKER_SCHEMA)
    context = {
        "active": "maintenance",
        "title": "Maintenance",
        "migrations": migrations,
        "recovery_functions": RECOVERY_FUNCTIONS,
        "can_maintain": can_run_maintenance(request.user),
        "needs_recovery": caps.flavour is Flavour.NODE,
        "index_rows": index_rows,
    }
    return render(request, "worker_admin/maintenance.html", context)


def add_recovery(request):
    """First post: the objects that will be created; the second, with its token, creates them
    once (operations/recovery_objects.py)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        if "token" not in request.POST:
            shown = recovery_objects.preview(request.user)
            context = {"active": "maintenance", "title": "Add the recovery objects", "shown": shown}
            return render(request, "worker_admin/add_recovery_preview.html", context)
        result = recovery_objects.apply(
            request.user, request.POST["token"], via="web", reason=request.POST.get("reason", "")
        )
    except Refused as exc:
        return _refused(request, ADD_RECOVERY, exc)
    messages.success(request, f"Recovery extension: {result.summary}.")
    return redirect(_entry_url(result.audit_entry_id, ADD_RECOVERY))


def index_change(request):
    """First post (name, action): the SQL, estimated size and write cost; the second, with its
    token, creates or drops the index once (operations/indexes.py)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    action = str(request.POST.get("action", ""))[:10]
    try:
        if "token" not in request.POST:
            shown = index_operation.preview(
                request.user, str(request.POST.get("name", ""))[:80], action
            )
            context = {"active": "maintenance", "title": "Index: preview", "shown": shown}
            return render(request, "worker_admin/index_preview.html", context)
        result = index_operation.apply(
            request.user, request.POST["token"], via="web", reason=request.POST.get("reason", "")
        )
    except Refused as exc:
        name = f"index_{action}" if action in index_operation.ACTIONS else "index"
        return _refused(request, name, exc)
    if result.ok:
        messages.success(request, f"Index: {result.summary}.")
    else:
        messages.error(request, f"Index: {result.summary}. Nothing else was changed.")
    return redirect(_entry_url(result.audit_entry_id, f"index_{result.action}"))


def _entry_url(entry_id: int, action: str) -> str:
    return f"{reverse('worker_admin:audit')}?{urlencode({'action': action})}#entry-{entry_id}"


def _refused(request, action: str, exc: Refused):
    """Audited as rejected, said in one sentence (naming the role needed, or the entry of the
    apply that already ran): nothing was changed."""
    record_rejection(actor=request.user, via="web", action=action, error=str(exc), data={})
    context = {"title": "Not allowed" if exc.status == 403 else "Nothing was changed"}
    context["message"] = str(exc)
    if isinstance(exc, AlreadyUsed) and exc.entry is not None:
        context["link"] = _entry_url(exc.entry.pk, exc.entry.action)
        context["link_text"] = f"Audit entry #{exc.entry.pk}"
    # A used, expired or another's confirmation: 400, as the other pages answer it.
    status = 400 if isinstance(exc, Stale) else exc.status
    return render(request, "worker_admin/error.html", context, status=status)
