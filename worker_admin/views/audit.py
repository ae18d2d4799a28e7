"""Audit: every write, attempted or done, with filters and CSV/JSON export.

Auditors read it; nobody changes it here (the model is append-only).
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import permission_required
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import BooleanField, ExpressionWrapper, F, Func, IntegerField, Q
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import databases
from worker_admin.audit import EXPORT_FIELDS, AuditEntry
from worker_admin.redaction import redact_parameters
from worker_admin.undo import undoable

PAGE_SIZE = 50
EXPORT_LIMIT = 100_000


class AuditFilterForm(forms.Form):
    user = forms.CharField(max_length=150, required=False, strip=True)
    action = forms.CharField(max_length=40, required=False, strip=True)
    outcome = forms.ChoiceField(choices=[("", "any"), *AuditEntry.Outcome.choices], required=False)
    after = forms.DateTimeField(required=False)
    before = forms.DateTimeField(required=False)
    job = forms.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    older_than = forms.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    # With several worker databases: this one (the URL's) unless "all" is asked for.
    database = forms.ChoiceField(choices=[("", "this database"), ("all", "all")], required=False)


def _filtered(form: AuditFilterForm):
    entries = AuditEntry.objects.all()
    data = form.cleaned_data
    if databases.several() and data.get("database") != "all":
        entries = entries.filter(worker_database=databases.current().name)
    if data.get("user"):
        entries = entries.filter(actor_name=data["user"])
    if data.get("action"):
        entries = entries.filter(action=data["action"])
    if data.get("outcome"):
        entries = entries.filter(outcome=data["outcome"])
    if data.get("after"):
        entries = entries.filter(created_at__gte=data["after"])
    if data.get("before"):
        entries = entries.filter(created_at__lte=data["before"])
    if data.get("job"):
        entries = entries.for_job(data["job"])
    return entries.order_by("-id")


# A bulk action's entry holds up to 10,000 ids in each list and a before-image of every row it
# changed: the list page needs only their sizes, so it leaves them in the database.
HEAVY_FIELDS = ("before_image", "requested_ids", "changed_ids", "skipped_ids", "missing_ids")


def _length(field: str) -> Func:
    return Func(F(field), function="jsonb_array_length", output_field=IntegerField())


def _listed(entries):
    return entries.defer(*HEAVY_FIELDS).annotate(
        has_before_image=ExpressionWrapper(~Q(before_image=[]), output_field=BooleanField()),
        requested_count=_length("requested_ids"),
        changed_count=_length("changed_ids"),
        skipped_count=_length("skipped_ids"),
    )


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
@permission_required("worker_admin.view_auditentry", raise_exception=True)
def audit_log(request):
    form = AuditFilterForm(request.GET)
    form.is_valid()
    problems = [
        f"Ignored the {name.replace('_', ' ')} filter: {errors[0]}"
        for name, errors in form.errors.items()
    ]
    entries = _filtered(form)
    export = request.GET.get("format")
    if export in ("csv", "json"):
        return _export(entries[:EXPORT_LIMIT], export)
    if form.cleaned_data.get("older_than"):
        entries = entries.filter(id__lt=form.cleaned_data["older_than"])
    page = list(_listed(entries)[: PAGE_SIZE + 1])
    params = {k: v for k, v in request.GET.items() if k not in ("older_than", "format") and v}
    older = page[PAGE_SIZE - 1].id if len(page) > PAGE_SIZE else None
    undone = set(
        AuditEntry.objects.filter(
            undo_of__in=[e.pk for e in page], outcome=AuditEntry.Outcome.DONE
        ).values_list("undo_of_id", flat=True)
    )
    context = {
        "undoable_ids": {
            e.pk
            for e in page
            if undoable(e, has_before_image=e.has_before_image) and e.pk not in undone
        },
        "active": "audit",
        "title": "Audit",
        "form": form,
        "problems": problems,
        "entries": page[:PAGE_SIZE],
        "older_url": "?" + urlencode({**params, "older_than": older}) if older else None,
        "first_url": "?" + urlencode(params) if form.cleaned_data.get("older_than") else None,
        "export_query": urlencode(params),
        "actions": AuditEntry.objects.order_by().values_list("action", flat=True).distinct(),
    }
    return render(request, "worker_admin/audit.html", context)


def _row(entry: AuditEntry) -> dict:
    row = {name: getattr(entry, name) for name in EXPORT_FIELDS}
    # An add keeps its payload in the parameters: exported redacted, stored whole.
    row["parameters"] = redact_parameters(row["parameters"])
    return row


def _export(entries, kind: str):
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if kind == "json":
        body = json.dumps([_row(e) for e in entries], cls=DjangoJSONEncoder, indent=1)
        response = HttpResponse(body, content_type="application/json")
    else:
        response = StreamingHttpResponse(_csv_lines(entries), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{kind}"'
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(entries):
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    for entry in entries.iterator(chunk_size=2000):
        row = _row(entry)
        yield writer.writerow(
            [
                json.dumps(v, cls=DjangoJSONEncoder) if isinstance(v, list | dict) else _safe(v)
                for v in row.values()
            ]
        )


def _safe(value) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas; quote those."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
