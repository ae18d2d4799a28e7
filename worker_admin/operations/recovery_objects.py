"""Adding the worker-recovery objects (the Rust extension) to a schema Node installed: a schema
change, previewed, applied once, audited in the same transaction.

    shown = preview(actor)                                   # the objects it will create
    result = apply(actor, shown.token, via="web", reason=…)  # once; AlreadyUsed for the others

The preview checks what the apply will check (a 0.18 core schema without the extension, nothing
newer than this installer knows) and lists the objects. The apply holds the confirmation's row
lock (claims.py), runs installer.add_recovery in the worker database's transaction and writes
the audit entry inside it: the objects and their entry commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from worker_admin import audit, installer
from worker_admin.installer import RECOVERY_FUNCTIONS, Flavour, UnsupportedSchemaError
from worker_admin.operations import claims
from worker_admin.operations.errors import Refused
from worker_admin.operations.permissions import require_maintenance
from worker_admin.schema import clear_capabilities_cache
from worker_admin.utils import WorkerUtils

KIND = ACTION = "add_recovery"
DOING = "adding the recovery objects"
REASON_MAX = 2000
TABLE = "_private_workers"
TABLE_INDEX = "_private_workers_last_heartbeat_at_idx"


class AlreadyPresent(Refused):
    """Nothing to add: the schema has the extension already."""

    status = 409


@dataclass(frozen=True)
class Preview:
    token: str
    schema: str
    objects: list[str]  # what will exist after, that does not before
    warnings: list[str]

    @property
    def summary(self) -> str:
        return f"will create table {TABLE}, its index and {len(RECOVERY_FUNCTIONS)} functions"


@dataclass(frozen=True)
class Result:
    schema: str
    added: bool
    summary: str
    audit_entry_id: int


def objects(schema: str) -> list[str]:
    """The objects the extension adds, as the preview lists them."""
    q = installer.quote_schema(schema)
    shown = [f"table {q}.{TABLE} (id, last_heartbeat_at, started_at, metadata)"]
    shown.append(f"index {q}.{TABLE_INDEX} on last_heartbeat_at")
    shown += [f"function {q}.{name}" for name in RECOVERY_FUNCTIONS]
    return shown


def _checked(utils: WorkerUtils) -> None:
    """What add_recovery itself refuses, read without changing anything."""
    with connections[utils.alias].cursor() as cursor:
        flavour = installer.detect_flavour(cursor, utils.schema)
        if flavour is Flavour.RUST_RECOVERY:
            raise AlreadyPresent(
                f"Nothing to add: the recovery objects are already in {utils.schema}."
            )
        if flavour is Flavour.ABSENT:
            raise Refused(
                f"cannot add the worker-recovery extension: schema {utils.schema} has no "
                "Graphile Worker tables; install the core schema first (migrate)",
                status=409,
            )
        if flavour is Flavour.LEGACY:
            raise Refused(installer._legacy_message(utils.schema), status=409)
        try:
            installer._refuse_newer_schema(cursor, utils.schema)
            installer._refuse_recovery_below_migration_20(cursor, utils.schema)
        except UnsupportedSchemaError as exc:
            raise Refused(str(exc), status=409) from None


def preview(actor, *, utils: WorkerUtils | None = None) -> Preview:
    """Read-only: what adding the recovery objects will create, stored as a confirmation."""
    require_maintenance(actor, DOING)
    utils = utils or WorkerUtils()
    _checked(utils)
    shown = objects(utils.schema)
    pinned = [{"alias": utils.alias, "schema": utils.schema, "objects": shown}]
    request = {"schema": utils.schema}
    token = claims.issue(KIND, actor, request, pinned, claims.fingerprint(request))
    warnings = [
        "Rust workers with recovery enabled start registering and heartbeating; Node workers "
        "are not affected. No job, queue or task changes, and no migration is recorded."
    ]
    return Preview(token, utils.schema, shown, warnings)


def apply(actor, confirmation: str, *, via: str = "web", reason: str = "") -> Result:
    """Create the objects the preview listed, once; the audit entry in the same transaction."""
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise Refused(f"The reason is longer than {REASON_MAX:,} characters.")
    require_maintenance(actor, DOING)  # the role first: a forged token from a viewer is a 403
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        row = claims.claim(confirmation, KIND, actor)
        claims.refuse_if_used(row)
        require_maintenance(actor, DOING)  # the role may have been taken away since the preview
        pinned = row.pinned[0]
        utils = WorkerUtils(pinned["alias"], pinned["schema"])
        try:
            with transaction.atomic(using=utils.alias), transaction.atomic(using=DEFAULT_DB_ALIAS):
                with connections[utils.alias].cursor() as cursor:
                    added = installer.add_recovery(cursor, utils.schema)
                summary = (
                    f"added {TABLE}, its index and the {len(RECOVERY_FUNCTIONS)} recovery functions"
                    if added
                    else "the recovery objects were already present; nothing changed"
                )
                entry = audit.record(
                    actor=actor,
                    via=via,
                    action=ACTION,
                    outcome="done",
                    worker_schema=utils.schema,
                    reason=reason,
                    parameters={
                        "schema": utils.schema,
                        "objects": pinned["objects"] if added else [],
                        "confirmation": row.nonce,
                    },
                    summary=summary,
                )
        except UnsupportedSchemaError as exc:  # changed since the preview: nothing was changed
            raise Refused(str(exc), status=409) from None
        claims.mark_used(row, {"first_entry": entry.pk, "summary": summary})
    clear_capabilities_cache()
    return Result(utils.schema, added, summary, entry.pk)
