"""Add jobs: one job from a form (/jobs/add/), or a batch from pasted or uploaded JSON
(/jobs/add/batch/).

Every write takes two steps (ARCHITECTURE.md). A POST without `confirm` validates and renders a
preview of exactly what will be written, including what a job key will do to the job that holds
it. A POST with `confirm` validates again, writes through WorkerUtils in one transaction, records
an audit entry and redirects with a message. Bad input at any step re-renders the form with the
reasons and records a "rejected" audit entry; nothing is written.

The confirmation token. The preview carries the validated values in hidden fields, plus a token
signed with django.core.signing (one salt per view) that holds the user's id, a SHA-256 of the
canonical values and a one-time nonce, which is also kept in the session. The confirming POST
must come from the same user, its values must hash to the same digest (so it cannot differ from
what was previewed), and its nonce must still be pending in the session. The nonce is consumed
inside the write's transaction, under a row lock on the user (two clicks on the same button wait
for each other there), and the audit entry of the write records it: a second submit of the same
confirmation finds that entry, says "already done" and writes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.db import DatabaseError, transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from worker_admin import audit
from worker_admin.actions import record_rejection
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
from worker_admin.operations.add_jobs import (
    AUDIT_BATCH_BYTES,
    AUDIT_PAYLOAD_BYTES,
    PREVIEW_ITEMS,
)
from worker_admin.operations.add_jobs import (
    batch_facts as _batch_facts,
)
from worker_admin.operations.add_jobs import (
    batch_summary as _batch_summary,
)
from worker_admin.operations.add_jobs import (
    db_error as _db_error,
)
from worker_admin.operations.add_jobs import (
    existing_keys as _existing_keys,
)
from worker_admin.operations.add_jobs import (
    fits_audit as _fits_audit,
)
from worker_admin.operations.add_jobs import (
    is_replaceable as _is_replaceable,
)
from worker_admin.operations.add_jobs import (
    job_summary as _job_summary,
)
from worker_admin.operations.add_jobs import (
    job_warnings as _job_warnings,
)
from worker_admin.operations.add_jobs import (
    key_effect as _key_effect,
)
from worker_admin.operations.add_jobs import (
    keyed_job as _keyed_job,
)
from worker_admin.operations.add_jobs import (
    serialize_confirmations as _serialize_confirmations,
)
from worker_admin.roles import can_act_on_jobs, role_of
from worker_admin.schema import capabilities
from worker_admin.stats import database_now
from worker_admin.utils import JobKeyMode, RawJobSpec, WorkerUtils, WorkerUtilsError

ADD_JOB, ADD_JOBS = "add_job", "add_jobs"
SALTS = {ADD_JOB: "worker_admin.views.add.add_job", ADD_JOBS: "worker_admin.views.add.add_batch"}
TOKEN_MAX_AGE = 60 * 60  # seconds a preview stays confirmable
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


class ConfirmationError(Exception):
    """A confirming POST that does not match a live preview; the text is for users."""


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


# -- the confirmation token -------------------------------------------------------------------


def _digest(values: Any) -> str:
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _issue_token(request, action: str, values: Any) -> str:
    nonce = secrets.token_urlsafe(16)
    pending = [n for n in request.session.get(PENDING_NONCES, []) if isinstance(n, str)]
    request.session[PENDING_NONCES] = [*pending, nonce][-PENDING_MAX:]
    payload = {"user": request.user.pk, "digest": _digest(values), "nonce": nonce}
    return signing.dumps(payload, salt=SALTS[action])


def _read_token(request, action: str, values: Any) -> str:
    """The nonce of a token that confirms exactly `values` for this user; else ConfirmationError."""
    try:
        data = signing.loads(
            request.POST.get("token", ""), salt=SALTS[action], max_age=TOKEN_MAX_AGE
        )
    except signing.SignatureExpired:
        raise ConfirmationError(
            "This preview is more than an hour old: nothing was added. Preview again, then confirm."
        ) from None
    except signing.BadSignature:
        raise ConfirmationError(
            "The confirmation token is missing or damaged: nothing was added. Preview again, "
            "then confirm."
        ) from None
    if not isinstance(data, dict) or data.get("user") != request.user.pk:
        raise ConfirmationError(
            "This confirmation belongs to another user: nothing was added. Preview again."
        )
    if not hmac.compare_digest(str(data.get("digest", "")), _digest(values)):
        raise ConfirmationError(
            "The values sent differ from the preview they confirm: nothing was added. Check "
            "the preview again, then confirm."
        )
    return str(data.get("nonce", ""))


def _earlier_use(action: str, nonce: str) -> audit.AuditEntry | None:
    return audit.AuditEntry.objects.filter(
        action=action, outcome=audit.AuditEntry.Outcome.DONE, parameters__confirmation=nonce
    ).first()


def _consume(request, nonce: str) -> bool:
    pending = request.session.get(PENDING_NONCES, [])
    if nonce not in pending:
        return False
    request.session[PENDING_NONCES] = [n for n in pending if n != nonce]
    return True


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
    now = database_now(settings.WORKER_DATABASE)
    existing = _keyed_job(spec.job_key)
    size = len(stored_json(payload).encode("utf-8"))
    queue_exists = (
        spec.queue_name is None
        or JobQueue.objects.using(settings.WORKER_DATABASE)
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
        "token": _issue_token(request, ADD_JOB, form.canonical()),
        "action_url": reverse("worker_admin:add_job"),
    }
    return render(request, "worker_admin/add_preview.html", context)


def _job_confirm(request, form: AddJobForm):
    try:
        nonce = _read_token(request, ADD_JOB, form.canonical())
    except ConfirmationError as exc:
        return _job_rejected(request, form, "confirm", str(exc))
    identifier, payload, spec = form.to_spec()
    values = form.canonical()
    text = stored_json(payload)
    size = len(text.encode("utf-8"))
    parameters = {**values, "payload_bytes": size, "confirmation": nonce}
    if not _fits_audit(text, AUDIT_PAYLOAD_BYTES):
        parameters["payload"] = None
        parameters["payload_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    failure = None
    with transaction.atomic():
        _serialize_confirmations(request.user)
        earlier = _earlier_use(ADD_JOB, nonce)
        if earlier is not None:
            return _already_done(request, earlier, reverse("worker_admin:jobs"))
        if not _consume(request, nonce):
            failure = (
                "rejected",
                "This confirmation is no longer valid (it was used already, or belongs to "
                "another session): nothing was added. Preview again, then confirm.",
            )
        else:
            existing = _keyed_job(spec.job_key)
            try:
                job = WorkerUtils().add_raw_job(identifier, payload, spec)
            except WorkerUtilsError as exc:
                failure = ("rejected", f"{exc} Nothing was added.")
            except DatabaseError as exc:
                failure = (
                    "failed",
                    f"The database refused the job: {_db_error(exc)}. Nothing was added.",
                )
            else:
                summary = _job_summary(job, identifier, existing, spec)
                audit.record(
                    actor=request.user,
                    via="web",
                    action=ADD_JOB,
                    outcome="done",
                    parameters=parameters,
                    changed_ids=[job.id],
                    summary=summary,
                    before_image=[audit.job_image(existing)] if existing is not None else [],
                )
    if failure is not None:
        outcome, error = failure
        if outcome == "rejected":
            return _job_rejected(request, form, "confirm", error)
        _record_failure(request, ADD_JOB, parameters, error)
        return _job_form(request, form, problems=[error])
    messages.success(request, summary[0].upper() + summary[1:] + ".")
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
    values = {"source": form.source, "items": form.canonical()}
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
        "token": _issue_token(request, ADD_JOBS, values),
        "action_url": reverse("worker_admin:add_batch"),
        "now": database_now(settings.WORKER_DATABASE),
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
    canonical = form.canonical()
    try:
        nonce = _read_token(request, ADD_JOBS, {"source": source, "items": canonical})
    except ConfirmationError as exc:
        return _batch_rejected(request, form, "confirm", str(exc))
    specs = form.specs
    tasks = Counter(raw.identifier for raw in specs)
    parameters: dict[str, Any] = {
        "count": len(specs),
        "source": source,
        "tasks": dict(tasks.most_common(50)),
        "keyed": sum(1 for raw in specs if raw.spec.job_key is not None),
        "preserve_run_at": any(
            raw.spec.job_key_mode == JobKeyMode.PRESERVE_RUN_AT for raw in specs
        ),
        "confirmation": nonce,
    }
    items_text = form.hidden_items()
    if _fits_audit(items_text, AUDIT_BATCH_BYTES):
        parameters["items"] = canonical
    else:
        parameters["items_sha256"] = hashlib.sha256(items_text.encode("utf-8")).hexdigest()
    failure = None
    with transaction.atomic():
        _serialize_confirmations(request.user)
        earlier = _earlier_use(ADD_JOBS, nonce)
        if earlier is not None:
            return _already_done(request, earlier, _jobs_url(specs))
        if not _consume(request, nonce):
            failure = (
                "rejected",
                "This confirmation is no longer valid (it was used already, or belongs to "
                "another session): nothing was added. Preview again, then confirm.",
            )
        else:
            existing = _existing_keys(specs)
            try:
                jobs = WorkerUtils().add_raw_jobs(specs)
            except WorkerUtilsError as exc:
                failure = ("rejected", f"{exc} Nothing was added.")
            except DatabaseError as exc:
                failure = (
                    "failed",
                    f"The database refused the batch: {_db_error(exc)}. Nothing was added.",
                )
            else:
                summary = _batch_summary(jobs, existing)
                audit.record(
                    actor=request.user,
                    via="web",
                    action=ADD_JOBS,
                    outcome="done",
                    parameters=parameters,
                    changed_ids=[job.id for job in jobs],
                    summary=summary,
                    before_image=[
                        audit.job_image(job) for job in existing.values() if _is_replaceable(job)
                    ],
                )
    if failure is not None:
        outcome, error = failure
        if outcome == "rejected":
            return _batch_rejected(request, form, "confirm", error)
        _record_failure(request, ADD_JOBS, parameters, error)
        return _batch_form(request, form, problems=[error])
    messages.success(request, summary[0].upper() + summary[1:] + ".")
    return _finish(request, _jobs_url(specs), [job.id for job in jobs])


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


def _record_failure(request, action: str, parameters: dict, error: str) -> None:
    """The database refused the confirmed add: nothing was written, and the log says so."""
    audit.record(
        actor=request.user,
        via="web",
        action=action,
        outcome="failed",
        parameters={"step": "confirm", **parameters},
        summary=f"{action} failed",
        error=_safe(error),
    )
