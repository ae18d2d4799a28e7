"""The Crons page's facts: what the database knows of each cron item, merged with the crontab.

`_private_known_crontabs` has one row per identifier a worker has loaded: since when it is known
and the due time of its last execution (the workers store the scheduled minute, not the moment
they ran it). The jobs a cron item queued carry `_cron` in their payload, but not the item's
identifier: they are counted per task, and an item gets its task's count.

"Missed": the item's latest due time that is at least CRON_MISSED_TOLERANCE_SECONDS old is later
than its last execution (or, never executed, than when it became known). The tolerance covers
the seconds a worker takes to queue the job after the minute turns. Shared by the page, the API
and /metrics, so the three never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections

from worker_admin.crontab import CronItem, Crontab, load_crontab
from worker_admin.models import Job, KnownCrontab, Task
from worker_admin.stats import database_now, is_large

# On a large jobs table (stats.is_large) only this many rows are read for the queued counts:
# a bounded pass on every refresh. Measured on 100k jobs, 2 % of them cron jobs, on the shared
# 2-core machine: 27 ms for a full pass, 18 ms for 50k rows.
QUEUED_SCAN_ROWS = 50_000

# Statuses, worst first (the page sorts by them).
MISSED = "missed"
NOT_LOADED = "not_loaded"  # in the crontab, but no worker has recorded it
NOT_IN_CRONTAB = "not_in_crontab"  # known to the database, absent from the given crontab
OK = "ok"
UNKNOWN = "unknown"  # no crontab given: no schedule to compare with
STATUS_ORDER = [MISSED, NOT_LOADED, NOT_IN_CRONTAB, OK, UNKNOWN]
STATUS_LABELS = {
    MISSED: "missed",
    NOT_LOADED: "not loaded by a worker",
    NOT_IN_CRONTAB: "not in the crontab",
    OK: "on time",
    UNKNOWN: "schedule unknown",
}


@dataclass(frozen=True)
class QueuedCronJobs:
    count: int
    oldest_run_at: datetime | None


@dataclass(frozen=True)
class CronRow:
    identifier: str
    item: CronItem | None
    known_since: datetime | None
    last_execution: datetime | None
    status: str
    words: str | None = None
    next_due: datetime | None = None
    previous_due: datetime | None = None
    queued: QueuedCronJobs | None = None
    task: str | None = None  # the task whose cron jobs `queued` counts
    task_shared: bool = False  # several rows share that task (and so the count)

    @property
    def missed(self) -> bool:
        return self.status == MISSED

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


@dataclass(frozen=True)
class CronReport:
    now: datetime
    crontab: Crontab | None
    rows: list[CronRow]
    tolerance: timedelta
    queued_exact: bool  # False: counted in the first QUEUED_SCAN_ROWS jobs only (lower bounds)

    @property
    def missed(self) -> int:
        return sum(row.missed for row in self.rows)

    @property
    def queued_scan_rows(self) -> int:
        return QUEUED_SCAN_ROWS


def tolerance() -> timedelta:
    return timedelta(seconds=getattr(settings, "CRON_MISSED_TOLERANCE_SECONDS", 60))


def is_missed(
    item: CronItem,
    known_since: datetime,
    last_execution: datetime | None,
    now: datetime,
    grace: timedelta,
) -> bool:
    due = item.previous_due(now - grace)
    return due is not None and (last_execution or known_since) < due


def queued_cron_jobs(
    alias: str, tasks: set[str], scan_limit: int | None
) -> dict[str, QueuedCronJobs]:
    """Jobs of these tasks whose payload has `_cron`, per task: all of them with scan_limit
    None, else those among the first `scan_limit` rows read (bounded work on a large table, so
    the counts are lower bounds)."""
    if not tasks:
        return {}
    # The tasks' ids first, so the scan tests an integer before it reads any payload.
    found = Task.objects.using(alias).filter(identifier__in=tasks)
    ids = dict(found.values_list("id", "identifier"))
    if not ids:
        return {}
    connection = connections[alias]
    jobs = connection.ops.quote_name(Job._meta.db_table)
    source = jobs
    if scan_limit is not None:
        source = f"(SELECT task_id, payload, run_at FROM {jobs} LIMIT %s)"
    # A payload holding \u0000 makes PostgreSQL's json operators fail, so for those (rare) the
    # text test decides; CASE fixes the order of evaluation.
    sql = (
        f"SELECT j.task_id, count(*), min(j.run_at) FROM {source} j "
        "WHERE j.task_id = ANY(%s) AND strpos(j.payload::text, '\"_cron\"') > 0 AND CASE "
        "WHEN strpos(j.payload::text, %s) > 0 THEN true "
        "ELSE json_typeof(j.payload) = 'object' AND j.payload -> '_cron' IS NOT NULL END "
        "GROUP BY j.task_id"
    )
    params: list = [] if scan_limit is None else [scan_limit]
    params += [sorted(ids), "\\u0000"]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {ids[task_id]: QueuedCronJobs(n, oldest) for task_id, n, oldest in rows}


def _row(
    identifier: str,
    item: CronItem | None,
    known: KnownCrontab | None,
    now: datetime,
    grace: timedelta,
    crontab_given: bool,
) -> CronRow:
    known_since = known.known_since if known else None
    last_execution = known.last_execution if known else None
    if item is None:
        status = NOT_IN_CRONTAB if crontab_given else UNKNOWN
        return CronRow(identifier, None, known_since, last_execution, status, task=identifier)
    if known is None:
        status = NOT_LOADED
    elif is_missed(item, known_since, last_execution, now, grace):
        status = MISSED
    else:
        status = OK
    return CronRow(
        identifier,
        item,
        known_since,
        last_execution,
        status,
        words=item.words(),
        next_due=item.next_due(now),
        previous_due=item.previous_due(now),
        task=item.task,
    )


def cron_report(
    alias: str, crontab_setting: str | None = None, *, with_queued: bool = True
) -> CronReport:
    """Every identifier of the database and of the crontab, with its status and its queued jobs
    (with_queued=False, as /metrics asks: not counted, every count 0).

    The crontab is read on every call (a file may change under the running console)."""
    setting = settings.GRAPHILE_WORKER_CRONTAB if crontab_setting is None else crontab_setting
    crontab = load_crontab(setting)
    now = database_now(alias)
    grace = tolerance()
    known = {row.identifier: row for row in KnownCrontab.objects.using(alias).all()}
    items = {item.identifier: item for item in crontab.items} if crontab else {}
    rows = [
        _row(identifier, items.get(identifier), known.get(identifier), now, grace, bool(crontab))
        for identifier in sorted(set(known) | set(items))
    ]
    per_task: dict[str, int] = {}
    for row in rows:
        per_task[row.task] = per_task.get(row.task, 0) + 1
    exact = not with_queued or not is_large(alias)
    queued = {}
    if with_queued:
        queued = queued_cron_jobs(alias, set(per_task), None if exact else QUEUED_SCAN_ROWS)
    rows = [_with_queue(row, queued.get(row.task), per_task[row.task] > 1) for row in rows]
    rows.sort(key=lambda row: (STATUS_ORDER.index(row.status), row.identifier))
    return CronReport(
        now=now,
        crontab=crontab,
        rows=rows,
        tolerance=grace,
        queued_exact=exact,
    )


def _with_queue(row: CronRow, queued: QueuedCronJobs | None, shared: bool) -> CronRow:
    return replace(row, queued=queued or QueuedCronJobs(0, None), task_shared=shared)
