"""GET /api/crons: the Crons page as JSON (worker_admin.crons). Any token may read."""

from __future__ import annotations

from ninja import Router

from worker_admin import crons
from worker_admin.api import serialize
from worker_admin.api.common import _payload_for, require_schema
from worker_admin.api.reads import known_parameters
from worker_admin.replica import read_alias

router = Router(tags=["reads"])


def _item(request, item) -> dict | None:
    if item is None:
        return None
    options = item.options
    return {
        "line": item.line_number,
        "schedule": item.expression,
        "task": item.task,
        "options": {
            "fill_seconds": serialize.seconds(options.fill),
            "max_attempts": options.max_attempts,
            "queue": options.queue,
            "priority": options.priority,
            "job_key": options.job_key,
            "job_key_mode": options.job_key_mode,
        },
        # Redacted as job payloads are: the crontab's payload becomes each job's payload.
        "payload": _payload_for(request, item.payload),
    }


@router.get("/crons", summary="Cron items: known, scheduled, missed", url_name="crons")
def cron_items(request):
    known_parameters(request)
    require_schema()
    report = crons.cron_report(read_alias())
    crontab = report.crontab
    return {
        "now": report.now,
        "missed_tolerance_seconds": serialize.seconds(report.tolerance),
        "crontab": None
        if crontab is None
        else {
            "source": crontab.source,
            "items": len(crontab.items),
            "refused_by_workers": crontab.refused_by_workers,
            "problems": [
                {"line": bad.line_number, "text": bad.text, "reason": bad.reason}
                for bad in crontab.problems
            ],
        },
        "queued_exact": report.queued_exact,
        "crons": [
            {
                "identifier": row.identifier,
                "status": row.status,
                "missed": row.missed,
                "known_since": row.known_since,
                "last_execution": row.last_execution,
                "schedule_in_words": row.words,
                "previous_due": row.previous_due,
                "next_due": row.next_due,
                "item": _item(request, row.item),
                "queued_task": row.task,
                "queued_jobs": row.queued.count if row.queued else 0,
                "queued_task_shared": row.task_shared,
            }
            for row in report.rows
        ],
    }
