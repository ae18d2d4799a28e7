"""What WorkerUtils' job actions report: what changed, what a worker held, what was missing."""

from __future__ import annotations

from dataclasses import dataclass

from worker_admin.models import JobColumns


@dataclass(frozen=True)
class JobActionResult:
    """What complete/fail/reschedule did to the ids asked for, without rounding up.

    Every requested id is in exactly one of `changed_ids`, `skipped_locked` and `missing`.
    `changed` holds the rows the schema function returned, in the order the ids were asked for:
    the rows after the change, except for `complete_jobs`, where they are the deleted rows (the
    before-image, payload included, which is what an undo needs).
    """

    requested: tuple[int, ...]
    changed: list[JobColumns]
    skipped_locked: tuple[int, ...]
    missing: tuple[int, ...]

    @property
    def changed_ids(self) -> tuple[int, ...]:
        return tuple(job.id for job in self.changed)

    @property
    def summary(self) -> str:
        parts = [f"changed {len(self.changed):,} of {len(self.requested):,}"]
        if self.skipped_locked:
            count = len(self.skipped_locked)
            holder = "holds it" if count == 1 else "holds them"
            parts.append(f"{count:,} skipped because a worker {holder}")
        if self.missing:
            parts.append(f"{len(self.missing):,} not found")
        return "; ".join(parts)


@dataclass(frozen=True)
class RemoveJobResult:
    """`remove_job(key)`: at most one of `removed` and `detached` is set.

    removed: the job was not held by a live worker and is deleted (this is its last image).
    detached: a worker holds it (lock under 4 hours): it keeps running but lost its key and its
    remaining attempts, so it will not run again; a new job may now use the key.
    """

    key: str
    removed: JobColumns | None
    detached: JobColumns | None

    @property
    def found(self) -> bool:
        return self.removed is not None or self.detached is not None

    @property
    def summary(self) -> str:
        if self.removed is not None:
            return f"removed job {self.removed.id} (key {self.key!r})"
        if self.detached is not None:
            return (
                f"job {self.detached.id} (key {self.key!r}) is held by a worker: it keeps running, "
                "lost its key and will not be retried"
            )
        return f"no job has the key {self.key!r}"


@dataclass(frozen=True)
class ForceUnlockResult:
    """The locks `force_unlock_workers` released (read just before, in the same transaction)."""

    jobs_unlocked: list[int]
    queues_unlocked: list[str]

    @property
    def summary(self) -> str:
        jobs, queues = len(self.jobs_unlocked), len(self.queues_unlocked)
        if not jobs and not queues:
            return "nothing to unlock: those workers hold no locks"
        return (
            f"unlocked {jobs:,} job{'' if jobs == 1 else 's'} and "
            f"{queues:,} queue{'' if queues == 1 else 's'}"
        )
