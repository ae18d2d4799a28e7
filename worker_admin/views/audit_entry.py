"""One audit entry on its own page: who, when, why, the filter, every id with what happened to
it, before -> after per column, and the undo button where undo applies (the existing undo
flow, views/undo.py: this page only links to it)."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import audit_detail
from worker_admin.audit import AuditEntry
from worker_admin.redaction import redact_parameters
from worker_admin.undo import undoable

# An entry id is a bigint; past this it is no entry, and the database need not be asked.
MAX_ENTRY_ID = 2**63 - 1


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
@permission_required("worker_admin.view_auditentry", raise_exception=True)
def audit_entry(request, entry_id: int):
    entry = AuditEntry.objects.filter(pk=entry_id).first() if entry_id <= MAX_ENTRY_ID else None
    if entry is None:
        raise Http404(f"There is no audit entry {entry_id}.")
    undone_by = list(entry.undone_by.order_by("-id").defer("before_image")[:20])
    ids, id_count = audit_detail.id_rows(entry)
    params = entry.parameters if isinstance(entry.parameters, dict) else {}
    worker_ids = params.get("worker_ids") if entry.action in ("force_unlock", "sweep") else None
    context = {
        "active": "audit",
        "title": f"Audit entry {entry.pk}",
        "entry": entry,
        "parameters": redact_parameters(entry.parameters),
        "ids": ids,
        "id_count": id_count,
        "counts": {
            "requested": len(entry.requested_ids or []),
            "changed": len(entry.changed_ids or []),
            "skipped": len(entry.skipped_ids or []),
            "missing": len(entry.missing_ids or []),
        },
        "images": audit_detail.image_rows(entry),
        "image_count": len(entry.before_image or []),
        "rows_shown": audit_detail.ROWS_SHOWN,
        "undone_by": undone_by,
        "can_undo": undoable(entry)
        and not any(u.outcome == AuditEntry.Outcome.DONE for u in undone_by),
        "worker_ids": [w for w in worker_ids or [] if isinstance(w, str) and w][:50],
    }
    return render(request, "worker_admin/audit_entry.html", context)
