"""What the subcommands share: the OS user for the audit log, the schema guard for reads."""

from __future__ import annotations

import getpass

from django.conf import settings
from django.core.management.base import CommandError

from worker_admin import audit
from worker_admin.utils import JobActionResult, WorkerUtils


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return "unknown"


def record(utils: WorkerUtils, action: str, **fields) -> None:
    """One audit entry for a CLI write that happened (outcome "done")."""
    audit.record(
        actor=os_user(),
        via=audit.AuditEntry.Via.CLI,
        action=action,
        outcome=audit.AuditEntry.Outcome.DONE,
        worker_schema=utils.schema,
        **fields,
    )


def record_action(
    utils: WorkerUtils, action: str, result: JobActionResult, *, reason: str = "", parameters=None
) -> None:
    record(
        utils,
        action,
        reason=reason,
        parameters=parameters or {},
        requested_ids=result.requested,
        changed_ids=result.changed_ids,
        skipped_ids=result.skipped_locked,
        missing_ids=result.missing,
        summary=result.summary,
    )


def action_result(result: JobActionResult, verb: str) -> dict:
    """The JSON shape of complete/fail/reschedule: stable keys, ids as lists."""
    return {
        "requested": list(result.requested),
        "changed": list(result.changed_ids),
        "skipped_locked": list(result.skipped_locked),
        "missing": list(result.missing),
        "summary": result.summary,
        "message": f"{verb.capitalize()}: {result.summary}.",
    }


def require_configured_schema(utils: WorkerUtils) -> None:
    """The read models are bound to GRAPHILE_WORKER_SCHEMA; refuse to read another schema."""
    if utils.schema != settings.GRAPHILE_WORKER_SCHEMA:
        raise CommandError(
            f"This command reads only the configured schema {settings.GRAPHILE_WORKER_SCHEMA}; "
            f"set GRAPHILE_WORKER_SCHEMA to read {utils.schema}."
        )
