"""Add jobs: one job from a form (/jobs/add/), or a batch from pasted or uploaded JSON
(/jobs/add/batch/).

Every write takes two steps (ARCHITECTURE.md). A POST without `confirm` validates and renders a
preview of exactly what will be written, including what a job key will do to the job that holds
it. A POST with `confirm` validates again, writes through WorkerUtils in one transaction, records
an audit entry and redirects with a message. Bad input at any step re-renders the form with the
reasons and records a "rejected" audit entry; nothing is written.

The confirmation. The preview is the operation's (worker_admin/operations/adding.py): it pins
what a key would do and returns a token; the page carries the validated values in hidden fields
and the token, which is also kept pending in this session. The operation checks the values hash
to what was previewed, that the job holding a key has not changed, and acts once (its
confirmation row, locked in the write's transaction): a second submit of the same confirmation
says "already done" and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from worker_admin import audit, databases
from worker_admin.forms import (
    BATCH_MAX_BYTES,
    BATCH_MAX_ITEMS,
    PAYLOAD_MAX_BYTES,
    AddJobForm,
    BatchAddForm,
    filesizeformat,
    stored_json,
)
from worker_admin.models import JobQueue
from worker_admin.operations import adding
from worker_admin.operations.add_jobs import (
    PREVIEW_ITEMS,
)
from worker_admin.operations.add_jobs import (
    batch_facts as _batch_facts,
)
from worker_admin.operations.add_jobs import (
    is_replaceable as _is_replaceable,
)
from worker_admin.operations.add_jobs import (
    job_warnings as _job_warnings,
)
from worker_admin.operations.add_jobs import (
    key_effect as _key_effect,
)
from worker_admin.operations.errors import AlreadyUsed, Refused
from worker_admin.operations.job_specs import Batch
from worker_admin.operations.rejections import record_rejection
from worker_admin.roles import can_act_on_jobs, role_of
from worker_admin.schema import capabilities
from worker_admin.stats import database_now
from worker_admin.utils import JobKeyMode, RawJobSpec

ADD_JOB, ADD_JOBS = "add_job", "add_jobs"
PENDING_NONCES = "worker_admin.add.pending"
PENDING_MAX = 20  # previews per session that can still be confirmed
REQUEST_HEADROOM_BYTES = 16 * 1024  # the token, the CSRF token and the multipart framing
FIELD_LABELS = {
    "identifier": "Task identifier",
    "payload": "Payload",
    "queue": "Queue",
    "run_at": "Run at",
    "max_attempts": "Max attempts",
    "priority": "Priority",
    "flags": "Flags",
    "job_key": "Job key",
    "job_key_mode": "Key mode",
    "items": "Batch",
    "file": "File",
}


# -- permission -------------------------------------------------------------------------------


def _forbidden(request) -> HttpResponse | None:
    if can_act_on_jobs(request.user):
        return None
    if settings.READ_ONLY:
        reason = (
            "This console is read-only (READ_ONLY is set on the server): nobody can add jobs "
            "through it."
        )
    else:
        reason = (
            f"Adding jobs needs the operator role. You are signed in as "
            f"{request.user.get_username()} with the {role_of(request.user)} role; ask an "
            "admin to add you to the operator group."
        )
    if request.method == "POST":  # a forged or stale form: refused, and on the record
        record_rejection(
            actor=request.user,
            via="web",
            action="add_jobs" if "batch" in request.path else "add_job",
            error=f"forbidden: {reason}",
            data={},
        )
    context = {"active": "jobs", "title": "Cannot add jobs", "forbidden": reason}
    return render(request, "worker_admin/add_job.html", context, status=403)


# -- the confirmation: the operation's token, and this browser session's claim on it -----------


def _remember(request, token: str) -> str:
    """The preview's token is also pending in this session: a confirmation is for the browser
    that saw the preview (the operation binds it to the user and acts once)."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
    pending = [n for n in request.session.get(PENDING_NONCES, []) if isinstance(n, str)]
    request.session[PENDING_NONCES] = [*pending, digest][-PENDING_MAX:]
    return token


def _session_guard(request, token: str):
    """Run by the operation under its claim: the token must be pending in this session."""
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]

    def guard() -> None:
        pending = request.session.get(PENDING_NONCES, [])
        if digest not in pending:
            raise Refused(
                "This confirmation is no longer valid (it was used already, or belongs to "
                "another session): nothing was added. Preview again, then confirm."
            )
        request.session[PENDING_NONCES] = [n for n in pending if n != digest]

    return guard


def _already_done(request, entry: audit.AuditEntry, fallback: str):
    when = timezone.localtime(entry.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")
    messages.info(
        request,
        f"Already done: this confirmation was used at {when} ({entry.summary}). "
        "Nothing was added again.",
    )
    if entry.action == ADD_JOB and entry.changed_ids:
        return _finish(request, reverse("worker_admin:job_detail", args=[entry.changed_ids[0]]))
    return _finish(request, fallback)


def _finish(request, url: str, added: list[int] | None = None) -> HttpResponse:
    """The answer to a confirmed write: a redirect, or for htmx an HX-Redirect plus an event."""
    if request.htmx:
        trigger = json.dumps({"jobs-added": {"ids": (added or [])[:100]}})
        return HttpResponse(status=204, headers={"HX-Redirect": url, "HX-Trigger": trigger})
    return redirect(url)


# -- shared -----------------------------------------------------------------------------------


def _error_lines(form) -> list[str]:
    """The form's errors as lines for the audit log, each naming its field once."""
    lines = []
    for name, errors in form.errors.items():
        label = FIELD_LABELS.get(name, "")
        for error in errors:
            named = not label or error.lower().startswith((label.lower(), f"the {label.lower()}"))
            lines.append(error if named else f"{label}: {error}")
    return lines


def _schema_problem() -> str | None:
    problem = capabilities().problem
    return f"{problem} Nothing was added." if problem else None


def _reject(request, action: str, step: str, error: str, parameters: dict) -> None:
    audit.record(
        actor=request.user,
        via="web",
        action=action,
        outcome="rejected",
        parameters={"step": step, **parameters},
        summary=f"{action} rejected at the {step}",
        error=_safe(error),
    )


def _safe(text: str) -> str:
    """Text the audit log can store: PostgreSQL text and jsonb refuse NUL characters."""
    return text.replace("\x00", "\ufffd")


def _clip(text: Any, limit: int = 200) -> str:
    text = _safe(str(text or ""))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- one job ----------------------------------------------------------------------------------


def _submitted_job(request) -> dict[str, Any]:
    """What a rejected POST asked for, clipped, for its audit entry."""
    post = request.POST
    fields = ("identifier", "queue", "run_at", "max_attempts", "priority", "flags", "job_key")
    values = {name: _clip(post.get(name)) for name in fields if post.get(name)}
    if post.get("job_key_mode"):
        values["job_key_mode"] = _clip(post["job_key_mode"], 40)
    values["payload_bytes"] = len(post.get("payload", "").encode("utf-8", "replace"))
    return values


def _job_form(request, form: AddJobForm, *, problems: list[str] = (), status: int = 200):
    context = {
        "active": "jobs",
        "title": "Add a job",
        "form": form,
        "problems": list(problems),
        "key_modes": [mode.value for mode in JobKeyMode],
        "payload_limit": PAYLOAD_MAX_BYTES,
        "time_zone": settings.TIME_ZONE,
    }
    return render(request, "worker_admin/add_job.html", context, status=status)


def _job_rejected(request, form: AddJobForm, step: str, problem: str | None = None):
    problems = [problem] if problem else []
    error = "\n".join([*problems, *_error_lines(form)])
    _reject(request, ADD_JOB, step, error, _submitted_job(request))
    return _job_form(request, form, problems=problems)


def _job_preview(request, form: AddJobForm):
    identifier, payload, spec = form.to_spec()
    now = database_now(databases.current().alias)
    shown = adding.preview_job(request.user, RawJobSpec(identifier, payload, spec))
    existing = shown.holders.get(spec.job_key) if spec.job_key else None
    size = len(stored_json(payload).encode("utf-8"))
    queue_exists = (
        spec.queue_name is None
        or JobQueue.objects.using(databases.current().alias)
        .filter(queue_name=spec.queue_name)
        .exists()
    )
    context = {
        "active": "jobs",
        "title": "Preview: add a job",
        "kind": "job",
        "identifier": identifier,
        "spec": spec,
        "payload_text": json.dumps(payload, indent=2, ensure_ascii=False),
        "payload_bytes": size,
        "queue_exists": queue_exists,
        "key_effect": _key_effect(spec, payload, existing),
        "kept_run_at": (
            existing.run_at
            if existing is not None
            and spec.job_key_mode == JobKeyMode.PRESERVE_RUN_AT
            and _is_replaceable(existing)
            else None
        ),
        "warnings": _job_warnings(identifier, spec, size, now),
        "now": now,
        "hidden": list(form.hidden_values().items()),
        "token": _remember(request, shown.token),
        "action_url": reverse("worker_admin:add_job"),
    }
    return render(request, "worker_admin/add_preview.html", context)


def _job_confirm(request, form: AddJobForm):
    identifier, payload, spec = form.to_spec()
    token = request.POST.get("token", "")
    try:
        added = adding.apply_job(
            request.user,
            token,
            RawJobSpec(identifier, payload, spec),
            via="web",
            guard=_session_guard(request, token),
        )
    except AlreadyUsed as exc:
        if exc.entry is None:
            return _job_rejected(request, form, "confirm", str(exc))
        return _already_done(request, exc.entry, reverse("worker_admin:jobs"))
    except adding.Failed as exc:
        return _job_form(request, form, problems=[str(exc)])
    except Refused as exc:
        return _job_rejected(request, form, "confirm", str(exc))
    job = added.jobs[0]
    messages.success(request, added.summary[0].upper() + added.summary[1:] + ".")
    return _finish(request, reverse("worker_admin:job_detail", args=[job.id]), [job.id])


@require_http_methods(["GET", "POST"])
def add_job(request):
    denied = _forbidden(request)
    if denied is not None:
        return denied
    if request.method == "GET":
        return _job_form(request, AddJobForm())
    form = AddJobForm(request.POST)
    if "edit" in request.POST:  # back from the preview, with its values
        form.is_valid()
        return _job_form(request, form)
    step = "confirm" if "confirm" in request.POST else "preview"
    problem = _schema_problem()
    if problem is not None:
        return _job_rejected(request, form, step, problem)
    if not form.is_valid():
        return _job_rejected(request, form, step)
    if step == "preview":
        return _job_preview(request, form)
    return _job_confirm(request, form)


# -- a batch ----------------------------------------------------------------------------------


def _submitted_batch(request) -> dict[str, Any]:
    upload = request.FILES.get("file")
    values: dict[str, Any] = {
        "bytes": len(request.POST.get("items", "").encode("utf-8", "replace"))
    }
    if upload is not None:
        values.update(file=_clip(upload.name, 200), bytes=upload.size)
    return values


def _batch_form(request, form: BatchAddForm, *, problems: list[str] = ()):
    context = {
        "active": "jobs",
        "title": "Add jobs from JSON",
        "form": form,
        "problems": list(problems),
        "max_items": BATCH_MAX_ITEMS,
        "max_bytes": BATCH_MAX_BYTES,
        "payload_limit": PAYLOAD_MAX_BYTES,
    }
    return render(request, "worker_admin/add_batch.html", context)


def _batch_rejected(request, form: BatchAddForm, step: str, problem: str | None = None):
    problems = [problem] if problem else []
    error = "\n".join([*problems, *_error_lines(form)])
    _reject(request, ADD_JOBS, step, error, _submitted_batch(request))
    return _batch_form(request, form, problems=problems)


def _batch_row(index: int, raw: RawJobSpec) -> dict[str, Any]:
    spec = raw.spec
    return {
        "index": index,
        "identifier": raw.identifier,
        "queue": spec.queue_name,
        "run_at": spec.run_at,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "key": spec.job_key,
        "mode": spec.job_key_mode.value if spec.job_key_mode else None,
        "flags": list(spec.flags or ()),
        "payload": _clip(json.dumps(raw.payload, ensure_ascii=False), 120),
    }


def _too_big_to_confirm(form: BatchAddForm) -> str | None:
    """The confirming POST carries the batch back in a hidden field, and Django refuses a request
    body over DATA_UPLOAD_MAX_MEMORY_SIZE (uploaded files aside) with a bare 400. Refuse such a
    batch here, with a reason, rather than show a preview that cannot be confirmed."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    size = len(form.hidden_items().encode("utf-8"))
    if limit is None or size + REQUEST_HEADROOM_BYTES <= limit:
        return None
    return (
        f"This batch is {filesizeformat(size)} as JSON, but the server accepts at most "
        f"{filesizeformat(limit)} per request (DATA_UPLOAD_MAX_MEMORY_SIZE), so its confirmation "
        "could not be sent. Split the batch, or ask an admin to raise that setting."
    )


def _batch_preview(request, form: BatchAddForm):
    specs = form.specs
    facts = _batch_facts(specs)
    shown = adding.preview_batch(request.user, Batch(specs), source=form.source)
    context = {
        "active": "jobs",
        "title": "Preview: add jobs",
        "kind": "batch",
        "count": len(specs),
        "source": form.source,
        "rows": [_batch_row(index, raw) for index, raw in enumerate(specs[:PREVIEW_ITEMS])],
        "more": max(0, len(specs) - PREVIEW_ITEMS),
        "facts": facts,
        "hidden": [("items", form.hidden_items()), ("source", form.source)],
        "token": _remember(request, shown.token),
        "action_url": reverse("worker_admin:add_batch"),
        "now": database_now(databases.current().alias),
    }
    return render(request, "worker_admin/add_preview.html", context)


def _jobs_url(specs: list[RawJobSpec]) -> str:
    query = {"sort": "newest"}
    tasks = {raw.identifier for raw in specs}
    queues = {raw.spec.queue_name for raw in specs}
    if len(tasks) == 1:
        query["task"] = next(iter(tasks))
    if len(queues) == 1 and None not in queues:
        query["queue"] = next(iter(queues))
    return reverse("worker_admin:jobs") + "?" + urlencode(query)


def _batch_confirm(request, form: BatchAddForm):
    source = request.POST.get("source", "")[:300]
    token = request.POST.get("token", "")
    try:
        added = adding.apply_batch(
            request.user,
            token,
            Batch(form.specs),
            source=source,
            via="web",
            guard=_session_guard(request, token),
        )
    except AlreadyUsed as exc:
        if exc.entry is None:
            return _batch_rejected(request, form, "confirm", str(exc))
        return _already_done(request, exc.entry, _jobs_url(form.specs))
    except adding.Failed as exc:
        return _batch_form(request, form, problems=[str(exc)])
    except Refused as exc:
        return _batch_rejected(request, form, "confirm", str(exc))
    messages.success(request, added.summary[0].upper() + added.summary[1:] + ".")
    return _finish(request, _jobs_url(form.specs), [job.id for job in added.jobs])


@require_http_methods(["GET", "POST"])
def add_batch(request):
    denied = _forbidden(request)
    if denied is not None:
        return denied
    if request.method == "GET":
        return _batch_form(request, BatchAddForm())
    if "edit" in request.POST:  # back from the preview: the batch goes into the paste box
        form = BatchAddForm(request.POST)
        form.is_valid()
        return _batch_form(request, form)
    form = BatchAddForm(request.POST, request.FILES)
    step = "confirm" if "confirm" in request.POST else "preview"
    problem = _schema_problem()
    if problem is not None:
        return _batch_rejected(request, form, step, problem)
    if not form.is_valid():
        return _batch_rejected(request, form, step)
    too_big = _too_big_to_confirm(form)
    if too_big is not None:
        return _batch_rejected(request, form, step, too_big)
    if step == "preview":
        return _batch_preview(request, form)
    return _batch_confirm(request, form)
