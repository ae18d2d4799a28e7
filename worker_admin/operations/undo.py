"""Undo an audited action, through the same pinned preview and single apply as every write.

    shown = preview(actor, entry_id)          # the rows now -> after the undo; a token
    result = apply(actor, shown.token)        # once; audited; skips what changed since

A restore (of a reschedule, run now, retry or permanent failure) pins each job that still exists
with its revision and updated_at: at apply, a job changed since the preview (a worker ran it,
someone rescheduled it again) is skipped and reported, never overwritten with values the
operator did not see. A completed job is re-added as a new job, once. The entry being undone is
locked for the apply, so two undos of one entry from different previews still act once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from worker_admin import audit
from worker_admin.audit import AuditEntry
from worker_admin.installer import quote_schema
from worker_admin.operations import claims
from worker_admin.operations.cleanup import utc_iso
from worker_admin.operations.errors import NotFound, Refused
from worker_admin.undo import CannotUndo, plan, readd_spec
from worker_admin.utils import RescheduleJobOptions, WorkerUtils

KIND = "undo"
PREVIEW_ROWS = 20
RESTORED = ("run_at", "priority", "attempts", "max_attempts")


@dataclass(frozen=True)
class Change:
    column: str
    now: str
    after: str


@dataclass(frozen=True)
class Row:
    """One job as the undo will leave it: restored values (before -> after), or a new job."""

    id: int
    task: str
    state: str  # "restore", "held by a worker (skipped)", "gone", "re-add as a new job"
    changes: list[Change]


@dataclass(frozen=True)
class Preview:
    token: str
    entry: AuditEntry
    readds: bool
    total: int
    present: int
    held: int
    rows: list[Row]

    @property
    def button(self) -> str:
        if self.readds:
            return f"Undo #{self.entry.pk}: add {self.total:,} new job{_s(self.total)}"
        text = f"Undo #{self.entry.pk}: restore {self.present - self.held:,} job"
        text += _s(self.present - self.held)
        if self.held:
            text += f"; {self.held:,} held by a worker will be skipped"
        return text


@dataclass
class Result:
    entry_id: int = 0
    changed: list[int] = field(default_factory=list)
    skipped_locked: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    summary: str = ""
    audit_entry_id: int | None = None


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _entry(entry_id: int) -> AuditEntry:
    entry = AuditEntry.objects.filter(pk=entry_id).first()
    if entry is None:
        raise NotFound(f"There is no audit entry #{entry_id}.")
    return entry


def preview(actor, entry_id: int) -> Preview:
    entry = _entry(entry_id)
    try:
        undo = plan(entry)
    except CannotUndo as exc:
        raise Refused(str(exc)) from None
    utils = WorkerUtils()
    ids = [image["id"] for image in undo.images]
    current = {} if undo.readds else _current(utils, ids)
    pinned = {
        "alias": utils.alias,
        "schema": utils.schema,
        "jobs": {str(i): [row["revision"], row["updated_at"]] for i, row in current.items()},
    }
    token = claims.issue(KIND, actor, {"entry": entry.pk}, [pinned], claims.fingerprint(entry.pk))
    rows = [_row(image, current.get(image["id"]), undo.readds) for image in undo.images]
    return Preview(
        token=token,
        entry=entry,
        readds=undo.readds,
        total=len(ids),
        present=len(current),
        held=sum(1 for row in current.values() if row["locked_by"]),
        rows=rows[:PREVIEW_ROWS],
    )


def _current(utils: WorkerUtils, ids: list[int]) -> dict[int, dict]:
    q = quote_schema(utils.schema)
    with connections[utils.alias].cursor() as cursor:
        cursor.execute(
            f"SELECT j.id, j.revision, j.updated_at, j.run_at, j.priority, j.attempts, "
            f"j.max_attempts, j.locked_by FROM {q}._private_jobs AS j "
            "WHERE j.id = ANY(%s::bigint[])",
            [ids],
        )
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    for row in rows:
        row["updated_at"] = row["updated_at"].isoformat()
        row["run_at"] = row["run_at"].isoformat()
    return {row["id"]: row for row in rows}


def _row(image: dict, now: dict | None, readds: bool) -> Row:
    task = image.get("task_identifier") or ""
    if readds:
        values = [Change(column, "", _shown(column, image.get(column))) for column in RESTORED]
        return Row(image["id"], task, "re-add as a new job", values)
    if now is None:
        return Row(image["id"], task, "gone", [])
    changes = [
        Change(column, _shown(column, now[column]), _shown(column, image[column]))
        for column in RESTORED
        if now[column] != image[column]
        and not (column == "run_at" and _same_moment(now[column], image[column]))
    ]
    state = "held by a worker (skipped)" if now["locked_by"] else "restore"
    return Row(image["id"], task, state, changes)


def _same_moment(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return a == b
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


def _shown(column: str, value) -> str:
    if column == "run_at" and value:
        return utc_iso(datetime.fromisoformat(value))
    return "" if value is None else str(value)


def apply(actor, confirmation: str, *, via: str = "web") -> Result:
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        row = claims.claim(confirmation, KIND, actor)
        claims.refuse_if_used(row)
        entry = AuditEntry.objects.select_for_update().filter(pk=row.request["entry"]).first()
        if entry is None:
            raise NotFound("The audit entry to undo is gone.")
        if entry.undone_by.filter(outcome=AuditEntry.Outcome.DONE).exists():
            raise Refused("This action was already undone.", status=409)
        pinned = row.pinned[0]
        utils = WorkerUtils(pinned["alias"], pinned["schema"])
        images = list(entry.before_image)
        with transaction.atomic(using=utils.alias), transaction.atomic(using=DEFAULT_DB_ALIAS):
            result = _readd(utils, images) if entry.action == "complete" else None
            result = result or _restore(utils, images, pinned["jobs"])
            done = audit.record(
                actor=actor,
                via=via,
                action=f"undo_{entry.action}",
                outcome="done",
                worker_schema=utils.schema,
                reason=f"undo of audit entry #{entry.pk}",
                parameters={"undo_of": entry.pk, "confirmation": row.nonce},
                requested_ids=[image["id"] for image in images],
                changed_ids=result.changed,
                skipped_ids=result.skipped_locked + result.stale,
                missing_ids=result.gone,
                summary=result.summary,
                undo_of=entry,
            )
        result.entry_id, result.audit_entry_id = entry.pk, done.pk
        claims.mark_used(row, {"first_entry": done.pk, "summary": result.summary})
    return result


def _readd(utils: WorkerUtils, images: list[dict]) -> Result:
    added = utils.add_raw_jobs([readd_spec(image) for image in images])
    result = Result(changed=[job.id for job in added])
    result.summary = (
        f"re-added {len(added):,} completed job{_s(len(added))} as new jobs "
        "(new ids, attempts from 0)"
    )
    return result


def _restore(utils: WorkerUtils, images: list[dict], pinned: dict[str, list]) -> Result:
    """Reschedule each job still as previewed back to its old values; group equal values."""
    result = Result()
    q = quote_schema(utils.schema)
    ids = [image["id"] for image in images]
    with connections[utils.alias].cursor() as cursor:
        cursor.execute(
            f"SELECT id, revision, updated_at FROM {q}._private_jobs "
            "WHERE id = ANY(%s::bigint[]) FOR UPDATE",
            [ids],
        )
        now = {r[0]: (r[1], r[2].isoformat()) for r in cursor.fetchall()}
    groups: dict[tuple, list[int]] = defaultdict(list)
    for image in images:
        job_id = image["id"]
        if job_id not in now:
            result.gone.append(job_id)
        elif str(job_id) not in pinned or list(now[job_id]) != pinned[str(job_id)]:
            result.stale.append(job_id)
        else:
            key = tuple(image[column] for column in RESTORED)
            groups[key].append(job_id)
    for (run_at, priority, attempts, max_attempts), group in groups.items():
        done = utils.reschedule_jobs(
            group,
            RescheduleJobOptions(
                run_at=datetime.fromisoformat(run_at),
                priority=priority,
                attempts=attempts,
                max_attempts=max_attempts,
            ),
        )
        result.changed += done.changed_ids
        result.skipped_locked += done.skipped_locked
        result.gone += done.missing
    result.summary = _restore_summary(result, len(images))
    return result


def _restore_summary(result: Result, total: int) -> str:
    parts = [f"restored {len(result.changed):,} of {total:,}"]
    if result.skipped_locked:
        parts.append(f"{len(result.skipped_locked):,} skipped: a worker holds them")
    if result.stale:
        parts.append(f"{len(result.stale):,} changed since the preview")
    if result.gone:
        parts.append(f"{len(result.gone):,} no longer exist")
    return "; ".join(parts)
