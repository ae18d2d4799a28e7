"""The `stats` subcommand: job counts by state, by task and by queue."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from worker_admin.cli.common import require_configured_schema
from worker_admin.cli.output import table
from worker_admin.stats import StateCounts, queue_stats
from worker_admin.utils import WorkerUtils

COUNT_KEYS = ("ready", "scheduled", "locked", "failed", "retrying", "total")


def _counts(counts: StateCounts) -> dict:
    return {key: getattr(counts, key) for key in COUNT_KEYS}


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def stats(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    require_configured_schema(utils)
    result = queue_stats(utils.alias)
    by_task = [
        {"task_identifier": g.name, **_counts(g.counts), "oldest_ready_at": _iso(g.oldest_ready_at)}
        for g in result.by_task
    ]
    by_queue = [
        {"queue_name": g.name, **_counts(g.counts), "locked_by": g.locked_by}
        for g in result.by_queue
    ]
    header = (
        "Jobs"
        if result.exact
        else f"Jobs (estimated from a random {result.sampled_fraction:.1%} sample, 95 % error)"
    )
    sections = [
        header,
        table(COUNT_KEYS, [[result.counts.estimate(key).display for key in COUNT_KEYS]]),
        f"Oldest ready job since: {_iso(result.oldest_ready_at) or '-'}",
        "",
        "By task",
        table(("task", *COUNT_KEYS), [[g["task_identifier"], *_row(g)] for g in by_task])
        if by_task
        else "(none)",
        "",
        "By queue",
        table(
            ("queue", *COUNT_KEYS, "locked_by"),
            [[g["queue_name"], *_row(g), g["locked_by"]] for g in by_queue],
        )
        if by_queue
        else "(none)",
    ]
    return {
        "now": _iso(result.now),
        "exact": result.exact,
        "sampled_fraction": result.sampled_fraction,
        "counts": _counts(result.counts),
        "estimates": {key: result.counts.estimate(key).as_dict() for key in COUNT_KEYS},
        "oldest_ready_at": _iso(result.oldest_ready_at),
        "oldest_lock_at": _iso(result.oldest_lock_at),
        "by_task": by_task,
        "by_queue": by_queue,
        "text": "\n".join(sections),
    }


def _row(group: dict) -> list:
    return [group[key] for key in COUNT_KEYS]
