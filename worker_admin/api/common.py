"""What every endpoint shares: the token's user, role checks, refusals that are audited, and
the one function every job payload goes through on its way out."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError
from django.http import JsonResponse
from ninja.errors import HttpError

from worker_admin import audit
from worker_admin.operations.jsonsafe import audit_safe
from worker_admin.operations.rejections import record_rejection
from worker_admin.redaction import redact, redact_parameters
from worker_admin.roles import can_act_on_jobs, can_run_maintenance, role_of
from worker_admin.schema import capabilities, read_capabilities

logger = logging.getLogger(__name__)
VIA = audit.AuditEntry.Via.API


class Refusal(Exception):
    """A write the API refuses: `status` and a sentence for the caller; audited as rejected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def user_of(request):
    return request.auth


def detail(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"detail": message, **extra}, status=status, encoder=DjangoJSONEncoder)


def refuse(request, action: str, refusal: Refusal, data: dict | None = None) -> JsonResponse:
    """Record the refused write, then answer with its sentence."""
    try:
        record_rejection(
            actor=user_of(request),
            via=VIA,
            action=action,
            error=refusal.message,
            data=audit_safe(data or {}),
        )
    except DatabaseError:  # the refusal stands even if the log cannot take it
        logger.exception("Could not audit a refused API %s", action)
    return detail(refusal.message, refusal.status)


WRITE_ACTIONS = {
    "/jobs/add/": "add_job",
    "/jobs/batch/": "add_jobs",
    "/maintenance/sweep/": "sweep",
    "/maintenance/force-unlock/": "force_unlock",
    "/maintenance/cleanup/": "cleanup",
    "/maintenance/recovery-objects/": "add_recovery",
    "/maintenance/indexes/": "index",
}


def write_action(request) -> str:
    """The audited action name of a refused write: by its path, or a job action's `action`."""
    for fragment, action in WRITE_ACTIONS.items():
        if fragment in request.path:
            return action
    try:
        body = json.loads(request.body) if request.body else {}
        action = body.get("action") if isinstance(body, dict) else None
    except (ValueError, RecursionError, RequestDataTooBig):
        action = None
    if isinstance(action, str) and action.isidentifier() and len(action) <= 40:
        return action
    return "job_action"


def write_permission(request, *, maintenance: bool = False) -> Refusal | None:
    """None when the token's user may do this write; else a 403 refusal saying why."""
    user = user_of(request)
    allowed = can_run_maintenance(user) if maintenance else can_act_on_jobs(user)
    if allowed:
        return None
    if settings.READ_ONLY:
        return Refusal(
            403,
            "The console is read-only (READ_ONLY is set on the server): nothing can be changed "
            "through it.",
        )
    needed = "admin" if maintenance else "operator"
    return Refusal(
        403,
        f"This needs the {needed} role; the token's user {user.get_username()} has the "
        f"{role_of(user)} role.",
    )


def schema_problem() -> Refusal | None:
    problem = capabilities().problem
    return Refusal(503, problem) if problem else None


def require_schema() -> None:
    """For reads: 503 with the console's sentence when the worker schema cannot be read (on
    the server the reads go to: the replica while it is in use)."""
    problem = read_capabilities().problem
    if problem:
        raise HttpError(503, problem)


def _payload_for(request, payload: Any) -> Any:
    """Every job payload the API outputs goes through here: redacted by REDACT_PAYLOAD_PATHS
    (worker_admin/redaction.py), as the console's pages show it."""
    shown, _paths = redact(payload)
    return shown


def payload_for(request, job) -> Any:
    return _payload_for(request, job.payload)


def audit_parameters_for(request, parameters: Any) -> Any:
    """An audit entry's parameters as output: the payloads an add kept there are redacted."""
    shown = redact_parameters(parameters)
    if isinstance(shown, dict) and isinstance(shown.get("items"), list):
        shown = dict(shown)
        shown["items"] = [
            {**item, "payload": _payload_for(request, item.get("payload"))}
            if isinstance(item, dict)
            else item
            for item in shown["items"]
        ]
    return shown
