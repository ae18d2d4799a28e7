"""What the subcommands share: the OS user for the audit log, the schema guard for reads."""

from __future__ import annotations

import getpass
import json
import logging

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError, connections

from worker_admin import audit
from worker_admin.schema import capabilities
from worker_admin.utils import JobActionResult, WorkerUtils

logger = logging.getLogger(__name__)


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


def record_rejection(utils: WorkerUtils, action: str, options: dict, error: str) -> None:
    """Bad input to a write is audited as "rejected", like the console's; nothing else happens.

    The options are kept as given (strings from the shell), minus the command's plumbing.
    """
    parameters = {
        name: value
        for name, value in options.items()
        if name not in _PLUMBING and value not in (None, False, [], "")
    }
    try:
        audit.record(
            actor=os_user(),
            via=audit.AuditEntry.Via.CLI,
            action=action,
            outcome=audit.AuditEntry.Outcome.REJECTED,
            worker_schema=utils.schema,
            parameters=json.loads(json.dumps(parameters, default=str)),
            error=error,
        )
    except DatabaseError:
        logger.warning("Could not audit a rejected %s command", action)


_PLUMBING = frozenset(
    {
        "verbosity",
        "settings",
        "pythonpath",
        "traceback",
        "no_color",
        "force_color",
        "skip_checks",
        "stdin",
        "stdout",
        "stderr",
        "subcommand",
        "json",
        "schema",
    }
)


def require_audit_log() -> None:
    """Writes are audited; refuse them (before any change) where the audit log is missing."""
    table = audit.AuditEntry._meta.db_table
    with connections["default"].cursor() as cursor:
        present = table in connections["default"].introspection.table_names(cursor)
    if not present:
        raise CommandError(
            f"The console's audit log is not installed in schema {settings.CONSOLE_SCHEMA}, "
            "and every write is audited: run `graphile_worker migrate --console-tables` once."
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


class SchemaProblem(CommandError):
    """The schema cannot be operated (missing, 0.15 or older, unreadable for this role): the
    sentence the web pages show, exit status 2, before any command reads or writes a job."""

    def __init__(self, message: str) -> None:
        super().__init__(message, returncode=2)


def require_usable_schema(utils: WorkerUtils) -> None:
    problem = capabilities(utils.alias, utils.schema).problem
    if problem is not None:
        raise SchemaProblem(problem)


def require_configured_schema(utils: WorkerUtils) -> None:
    """The read models are bound to GRAPHILE_WORKER_SCHEMA; refuse to read another schema."""
    if utils.schema != settings.GRAPHILE_WORKER_SCHEMA:
        raise CommandError(
            f"This command reads only the configured schema {settings.GRAPHILE_WORKER_SCHEMA}; "
            f"set GRAPHILE_WORKER_SCHEMA={utils.schema} (or use `graphile-console --schema "
            f"{utils.schema}`) to read it."
        )


def action_outcome(outcome, verb: str) -> dict:
    """The JSON shape of complete/fail/reschedule from an operation's outcome: the ids come
    from its audit entries (the operation keeps counts; the entries keep the ids)."""
    entries = list(audit.AuditEntry.objects.filter(pk__in=outcome.entries).order_by("pk"))
    stale = {i for e in entries for i in e.parameters.get("changed_since_preview", [])}
    return {
        "requested": [i for e in entries for i in e.requested_ids],
        "changed": [i for e in entries for i in e.changed_ids],
        "skipped_locked": [i for e in entries for i in e.skipped_ids if i not in stale],
        "missing": [i for e in entries for i in e.missing_ids],
        "summary": outcome.summary,
        "message": f"{verb.capitalize()}: {outcome.summary}.",
    }
