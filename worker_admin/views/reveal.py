"""Reveal one job's whole payload, redacted fields included: operators and admins, audited.

A POST (so a link, a prefetch or a crawler never reveals anything), answered with the job page
showing the payload once; the answer is not cached, and reloading the job shows it redacted
again. Viewers get 403 and the refusal is audited too.
"""

from __future__ import annotations

from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers

from worker_admin import audit, databases
from worker_admin.models import Job
from worker_admin.redaction import may_reveal, redact
from worker_admin.views.jobs import job_page

REVEAL_PAYLOAD = "reveal_payload"


def reveal_payload(request, job_id: int):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not may_reveal(request.user):
        audit.record(
            actor=request.user,
            via="web",
            action=REVEAL_PAYLOAD,
            outcome="rejected",
            requested_ids=[job_id],
            error="forbidden: revealing a payload needs the operator role",
            summary="rejected; nothing shown",
        )
        return render(
            request,
            "worker_admin/error.html",
            {"title": "Not allowed", "message": "Revealing a payload needs the operator role."},
            status=403,
        )
    job = Job.objects.using(databases.current().alias).filter(id=job_id).only("payload").first()
    if job is None:
        raise Http404(
            f"There is no job {job_id}: it may have completed (completed jobs are deleted)."
        )
    _, paths = redact(job.payload)
    audit.record(
        actor=request.user,
        via="web",
        action=REVEAL_PAYLOAD,
        outcome="done",
        requested_ids=[job_id],
        parameters={"redacted_paths": paths},
        # PostgreSQL text refuses NUL characters: a stand-in keeps the rest of the reason.
        reason=request.POST.get("reason", "")[:500].replace("\x00", "\ufffd"),
        summary=f"showed the whole payload of job {job_id}"
        + (f" ({len(paths)} redacted field{'s' if len(paths) != 1 else ''})" if paths else ""),
    )
    response = job_page(request, job_id, reveal=True)
    add_never_cache_headers(response)
    return response
