"""Creating or dropping one of the opt-in indexes (worker_admin/indexes.py): previewed with its
SQL, estimated size and write cost, applied once, audited.

    shown = preview(actor, "console_jobs_locked", "create")
    result = apply(actor, shown.token, via="api", reason=…)

CREATE INDEX CONCURRENTLY (and DROP INDEX CONCURRENTLY) cannot run inside a transaction, so this
operation cannot put the change and its audit entry in one. It does the next best thing, in
three steps (docs/hardening.md):

1. one transaction: claim the confirmation (its row lock; a second apply waits, then finds it
   used and gets AlreadyUsed naming this entry), write a "started" entry, mark it used;
2. autocommit: build or drop the index, CONCURRENTLY, so the workers keep writing;
3. a "done" or "failed" entry (with PostgreSQL's error) pointing at the "started" one.

A crash between 2 and 3 leaves a "started" entry with no end: the index's state then says what
happened (`console_indexes list` shows present, absent or INVALID, and create rebuilds an
invalid one).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from worker_admin import audit, indexes
from worker_admin.operations import claims
from worker_admin.operations.errors import Refused
from worker_admin.operations.permissions import require_maintenance
from worker_admin.utils import WorkerUtils

KIND = "index"
ACTIONS = ("create", "drop")
REASON_MAX = 2000
STARTED = "started"


@dataclass(frozen=True)
class Preview:
    token: str
    name: str
    action: str
    sql: str
    before: str  # "absent", "present" or "invalid (an interrupted build)"
    after: str
    rows: int  # the planner's estimate of the rows the index holds
    estimated_bytes: int
    helps: str
    write_cost: str
    warnings: list[str]

    @property
    def summary(self) -> str:
        return f"will {self.action} index {self.name}: {self.before} -> {self.after}"


@dataclass(frozen=True)
class Result:
    name: str
    action: str
    ok: bool
    summary: str
    started_entry_id: int
    audit_entry_id: int  # the "done" or "failed" entry
    error: str = ""


class NothingToDo(Refused):
    """The index is already as asked (present to create, absent to drop)."""

    status = 409


def _state(utils: WorkerUtils, name: str) -> str:
    for item in indexes.status(utils.alias, utils.schema):
        if item.index.name == name:
            if not item.present:
                return "absent"
            return "present" if item.valid else "invalid (an interrupted build)"
    return "absent"


def _doing(action: str) -> str:
    return "creating an index" if action == "create" else "dropping an index"


def _request(name: str, action: str) -> dict:
    if action not in ACTIONS:
        raise Refused(f"Choose create or drop, not “{str(action)[:20]}”.")
    try:
        index = indexes.get(str(name or ""))
    except indexes.UnknownIndex as exc:
        raise Refused(str(exc)) from None
    return {"name": index.name, "action": action}


def preview(actor, name: str, action: str = "create", *, utils: WorkerUtils | None = None):
    """Read-only: the SQL, the estimated size and the write cost, stored as a confirmation."""
    request = _request(name, action)
    require_maintenance(actor, _doing(action))
    utils = utils or WorkerUtils()
    before = _state(utils, request["name"])
    if action == "create" and before == "present":
        raise NothingToDo(f"Index {request['name']} already exists; nothing to create.")
    if action == "drop" and before == "absent":
        raise NothingToDo(f"Index {request['name']} does not exist; nothing to drop.")
    estimate = indexes.preview(utils.alias, utils.schema, request["name"])
    index = estimate.index
    sql = index.create_sql(utils.schema) if action == "create" else index.drop_sql(utils.schema)
    warnings = []
    if before.startswith("invalid"):
        warnings.append(
            "An earlier build was interrupted and left the index invalid: it is dropped first."
        )
    if action == "create":
        warnings.append(
            "The build reads the whole jobs table without blocking the workers' writes; on a "
            "large table it takes minutes. The workers then pay the write cost below."
        )
    else:
        warnings.append(f"The pages it helps ({index.helps}) become slower on large tables.")
    pinned = [{"alias": utils.alias, "schema": utils.schema, "sql": sql, "before": before}]
    token = claims.issue(KIND, actor, request, pinned, claims.fingerprint(request))
    after = "present" if action == "create" else "absent"
    return Preview(
        token=token,
        name=index.name,
        action=action,
        sql=sql,
        before=before,
        after=after,
        rows=estimate.rows,
        estimated_bytes=estimate.estimated_bytes,
        helps=index.helps,
        write_cost=index.write_cost,
        warnings=warnings,
    )


def request_digest(name: str, action: str) -> str:
    return claims.fingerprint(_request(name, action))


def apply(
    actor, confirmation: str, *, via: str = "web", reason: str = "", digest: str | None = None
) -> Result:
    """Create or drop the previewed index, once: claimed and "started" in one transaction, built
    in autocommit (CONCURRENTLY cannot run in a transaction), then "done" or "failed"."""
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise Refused(f"The reason is longer than {REASON_MAX:,} characters.")
    # First: a viewer's forgery is a 403.
    require_maintenance(actor, "creating or dropping an index")
    if any(connection.in_atomic_block for connection in connections.all(initialized_only=True)):
        raise Refused(
            "CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction; nothing was changed."
        )
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        row = claims.claim(confirmation, KIND, actor, digest)
        claims.refuse_if_used(row)
        name, action = row.request["name"], row.request["action"]
        require_maintenance(actor, _doing(action))
        pinned = row.pinned[0]
        parameters = {
            "index": name,
            "sql": pinned["sql"],
            "before": pinned["before"],
            "confirmation": row.nonce,
        }
        started = _entry(actor, via, name, action, pinned, reason, parameters, STARTED)
        claims.mark_used(row, {"first_entry": started.pk, "summary": f"{action} {name} started"})
    error = ""
    try:
        run = indexes.create if action == "create" else indexes.drop
        run(pinned["alias"], pinned["schema"], name)
    except DatabaseError as exc:
        error = str(exc).strip()[:2000]
    ok = not error
    summary = f"{'created' if action == 'create' else 'dropped'} index {name}"
    if not ok:
        summary = f"{action} index {name} failed: {error.splitlines()[0] if error else ''}"
    outcome = "done" if ok else "failed"
    ended = _entry(
        actor,
        via,
        name,
        action,
        pinned,
        reason,
        parameters | {"started_entry": started.pk},
        outcome,
        summary=summary,
        error=error,
    )
    return Result(name, action, ok, summary, started.pk, ended.pk, error)


def _entry(actor, via, name, action, pinned, reason, parameters, outcome, *, summary="", error=""):
    return audit.record(
        actor=actor,
        via=via,
        action=f"index_{action}",
        outcome=outcome,
        worker_schema=pinned["schema"],
        reason=reason,
        parameters=parameters,
        summary=summary or f"{action} index {name}: started ({pinned['before']} before)",
        error=error,
    )
