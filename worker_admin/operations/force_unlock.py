"""Force-unlock: release the job and queue locks of worker ids known to be dead, on exactly the
locks a preview pinned, once.

    shown = preview(actor, ["worker-1"])                       # pinned locks, rows, warnings
    result = apply(actor, shown.token, reason=..., via="web")  # once; audited

Only locked_by and locked_at change (attempts, run_at and last_error stay, so the jobs simply
become runnable again). A pinned job that another worker took, or that completed or changed since
the preview, is skipped and reported; a lock these ids took after the preview is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from worker_admin import audit
from worker_admin.cleanup import plural, require_usable
from worker_admin.fleet import FRESH_HEARTBEAT
from worker_admin.installer import quote_schema
from worker_admin.operations import claims, lock_pins
from worker_admin.operations import releasing as rel
from worker_admin.operations.errors import Refused
from worker_admin.operations.sweep_finding import FLAGS
from worker_admin.utils import WorkerUtils, WorkerUtilsError

KIND = "force_unlock"
MAX_IDS = 1000
REASON_NEEDED = "Give a reason to force-unlock; it goes in the audit log."


@dataclass(frozen=True)
class Preview:
    token: str
    worker_ids: list[str]
    reason: str
    now: datetime
    job_ids: list[int]
    rows: list[rel.Row]
    counts: list[tuple[str, str, int]]
    queue_names: list[str]
    fresh: list[str]
    warnings: list[str]

    @property
    def summary(self) -> str:
        """Future tense: "release 3 jobs and 1 queue held by 2 worker ids"."""
        return (
            f"release {plural(len(self.job_ids), 'job')} and "
            f"{plural(len(self.queue_names), 'queue')} held by "
            f"{plural(len(self.worker_ids), 'worker id')}"
        )


class Result(rel.Released):
    @property
    def summary(self) -> str:
        if not self.pinned and not self.queues_unlocked:
            return "nothing to unlock: those workers held no locks at the preview"
        text = self.changed_text() + f", unlocked {plural(len(self.queues_unlocked), 'queue')}"
        return "; ".join([text, *self.tail()])


def worker_ids(values) -> list[str]:
    """The ids as given, stripped, each once; one sentence when they cannot be used."""
    if isinstance(values, str):
        values = values.replace(",", "\n").splitlines()
    ids = list(dict.fromkeys(str(v).strip() for v in values or [] if str(v).strip()))
    if not ids:
        raise Refused("Give at least one worker id.")
    if len(ids) > MAX_IDS or any(len(i) > 1000 for i in ids):
        raise Refused("At most 1,000 worker ids of up to 1,000 characters.")
    return ids


def request_digest(ids) -> str:
    return claims.fingerprint({"worker_ids": worker_ids(ids)})


def preview(actor, ids, reason: str = "", *, utils: WorkerUtils | None = None) -> Preview:
    rel.require_admin(actor)
    ids = worker_ids(ids)
    reason = rel.clean_reason(reason)
    utils = utils or WorkerUtils()
    try:
        caps = require_usable(utils.alias, utils.schema)
    except WorkerUtilsError as exc:
        raise Refused(str(exc)) from None
    q = quote_schema(utils.schema)
    with transaction.atomic(using=utils.alias), connections[utils.alias].cursor() as cursor:
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
        pins = lock_pins.read(cursor, q, "j.locked_by = ANY(%s::text[])", [ids], FLAGS)
        shown = lock_pins.shown(cursor, q, [pin.id for pin in pins[: rel.PREVIEW_ROWS]])
        counts = lock_pins.counts(cursor, q, [(pin.task_id, "unlock") for pin in pins])
        queues = rel.pin_queues(cursor, q, ids)
        fresh = _fresh(cursor, q, ids, now) if caps.has_workers_table else []
    pinned = {
        "alias": utils.alias,
        "schema": utils.schema,
        "jobs": [pin.pin(rel.UNLOCK) for pin in pins],
        "queues": queues,
    }
    values = {"worker_ids": ids}
    token = claims.issue(
        KIND, actor, values | {"reason": reason}, [pinned], claims.fingerprint(values)
    )
    warnings = [
        f"Worker {w} sent a heartbeat less than a minute ago: it is probably alive, and its "
        "jobs may run twice if unlocked."
        for w in fresh
    ]
    holding = {pin.locked_by for pin in pins} | {by for _n, by, _at in queues}
    idle = [w for w in ids if w not in holding]
    if idle:
        warnings.append(f"Holding no locks now: {', '.join(idle[:20])}.")
    return Preview(
        token=token,
        worker_ids=ids,
        reason=reason,
        now=now,
        job_ids=[pin.id for pin in pins],
        rows=[
            rel.Row(job.id, job.task, job.locked_by, "unlock", rel.changes(job, rel.UNLOCK))
            for job in shown
        ],
        counts=counts,
        queue_names=[name for name, _by, _at in queues],
        fresh=fresh,
        warnings=warnings,
    )


def _fresh(cursor, q: str, ids: list[str], now: datetime) -> list[str]:
    cursor.execute(
        f"SELECT id FROM {q}._private_workers WHERE id = ANY(%s::text[]) "
        "AND last_heartbeat_at > %s ORDER BY id",
        [ids, now - FRESH_HEARTBEAT],
    )
    return [row[0] for row in cursor.fetchall()]


def apply(
    actor,
    confirmation: str,
    *,
    reason: str = "",
    via: str = "web",
    digest: str | None = None,
    reason_required: bool = True,
) -> Result:
    """Release what the preview `confirmation` pinned, once (AlreadyUsed for a second apply)."""
    rel.require_admin(actor)
    reason = rel.clean_reason(reason)
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        needed = REASON_NEEDED if reason_required else None
        row, reason = rel.claim_with_reason(confirmation, KIND, actor, digest, reason, needed)
        pinned = row.pinned[0]
        q = quote_schema(pinned["schema"])
        result = Result()
        alias = pinned["alias"]
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            rel.release_jobs(cursor, q, pinned["jobs"], result)
            result.queues_unlocked = rel.release_queues(cursor, q, pinned["queues"], set())
            with transaction.atomic(using=DEFAULT_DB_ALIAS):
                entry = audit.record(
                    actor=actor,
                    via=via,
                    action=KIND,
                    outcome="done",
                    worker_schema=pinned["schema"],
                    reason=reason,
                    parameters={
                        "worker_ids": row.request["worker_ids"],
                        "queues_unlocked": result.queues_unlocked,
                        "confirmation": row.nonce,
                    },
                    requested_ids=[pin[0] for pin in pinned["jobs"]],
                    changed_ids=result.changed_ids,
                    skipped_ids=sorted(result.held_ids + result.stale_ids),
                    missing_ids=result.gone_ids,
                    summary=result.summary,
                )
        result.audit_entry_id = entry.pk
        claims.mark_used(row, {"first_entry": entry.pk, "summary": result.summary})
    return result
