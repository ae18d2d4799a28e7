"""The benchmark's pages, each measured three ways: the console, the floor and the naive admin.

- console: the console's page through Django's test client (the whole request);
- floor: the single best SQL query for what that page shows, timed alone on a cursor (no
  Django, no rendering): what no implementation can beat by much;
- naive: Django's admin over the same unmanaged models (bench/naive_admin.py), which counts the
  filtered rows exactly and pages with OFFSET: what a team would build first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TOKEN = re.compile(r'name="token" value="([^"]+)"')
BATCH = re.compile(r'name="batch" value="([^"]+)"')


@dataclass(frozen=True)
class Extra:
    """Values from the data for the pages beyond run.py's Targets."""

    schema: str
    jobs: int
    hot_task_id: int
    rare_task_id: int
    queue_id: int
    bulk_queue: str  # the queue whose job count is closest to BULK_JOBS
    bulk_queue_id: int
    bulk_queue_jobs: int
    job_key: str
    job_id: int
    error_text: str
    deep_id: int  # the id at the top of page deep_pages + 1 of the newest-first list
    deep_pages: int
    priorities: list[int]


BULK_JOBS = 10_000
ERROR_TEXT = "Recipient address rejected"


def discover_extra(query: Callable[..., list[tuple]], schema: str, targets, deep_pages: int):
    s = schema
    (jobs,) = query(
        f"select reltuples::bigint from pg_class where oid = '{s}._private_jobs'::regclass"
    )[0]
    task_ids = dict(query(f"select identifier, id from {s}._private_tasks"))
    queue_ids = dict(query(f"select queue_name, id from {s}._private_job_queues"))
    counts = query(
        f"select job_queue_id, count(*) from {s}._private_jobs where job_queue_id is not null "
        "group by 1"
    )
    bulk_id, bulk_jobs = min(counts, key=lambda row: abs(row[1] - BULK_JOBS))
    bulk_name = next(name for name, qid in queue_ids.items() if qid == bulk_id)
    key_row = query(f"select key from {s}._private_jobs where key is not null order by id limit 1")
    (deep_id,) = query(
        f"select id from {s}._private_jobs order by id desc offset %s limit 1", [deep_pages * 50]
    )[0]
    priorities = [
        row[0]
        for row in query(
            f"select distinct priority from {s}._private_jobs where is_available order by 1"
        )
    ]
    return Extra(
        schema=s,
        jobs=jobs,
        hot_task_id=task_ids[targets.hot_task],
        rare_task_id=task_ids[targets.rare_task],
        queue_id=queue_ids[targets.queue],
        bulk_queue=bulk_name,
        bulk_queue_id=bulk_id,
        bulk_queue_jobs=bulk_jobs,
        job_key=key_row[0][0] if key_row else "none",
        job_id=targets.failed_job_id or 1,
        error_text=ERROR_TEXT,
        deep_id=deep_id,
        deep_pages=deep_pages,
        priorities=priorities,
    )


# --- the floor: one hand-written query per page --------------------------------------------

COLUMNS = "id, task_id, job_queue_id, priority, run_at, attempts, max_attempts, key, locked_at"
READY = "is_available and run_at <= now()"
SCHEDULED = "is_available and run_at > now()"
FAILED = "locked_at is null and attempts >= max_attempts"
RETRYING = "is_available and attempts > 0"
STATE_COUNTS = (
    f"count(*) filter (where {READY}) as ready, count(*) filter (where {SCHEDULED}) as sched, "
    f"count(*) filter (where locked_at is not null) as locked, count(*) filter (where {FAILED}) "
    f"as failed, count(*) filter (where {RETRYING}) as retrying"
)


def floor_sql(e: Extra) -> dict[str, tuple[str, list[Any]]]:
    """The best single query for each page, by page key (see run.py's page list)."""
    j = f"{e.schema}._private_jobs"
    percent = min(100.0, 100.0 * 20_000 / max(e.jobs, 1))
    sample = (
        f"select task_id, job_queue_id, {STATE_COUNTS} from {j} "
        f"tablesample system ({percent:.4f}) repeatable (1) group by 1, 2"
    )
    newest = f"select {COLUMNS} from {j} where {{}} order by id desc limit 51"
    values = ", ".join(f"({p})" for p in e.priorities) or "(0)"
    scheduled = (
        f"select j.* from (values {values}) as p(priority) cross join lateral "
        f"(select {COLUMNS} from {j} where {SCHEDULED} and priority = p.priority "
        "order by run_at, id limit 51) as j order by run_at, id limit 51"
    )
    return {
        "overview": (sample, []),
        "jobs: all": (f"select {COLUMNS} from {j} order by id desc limit 51", []),
        "jobs: ready": (
            f"select {COLUMNS} from {j} where {READY} order by priority, run_at, id limit 51",
            [],
        ),
        "jobs: scheduled": (scheduled, []),
        "jobs: locked": (newest.format("locked_at is not null"), []),
        "jobs: failed": (newest.format(FAILED), []),
        "jobs: retrying": (newest.format(RETRYING), []),
        "jobs: deep page": (newest.format("id <= %s"), [e.deep_id]),
        "jobs: hot task": (newest.format("task_id = %s"), [e.hot_task_id]),
        "jobs: rare task": (newest.format("task_id = %s"), [e.rare_task_id]),
        "jobs: queue": (newest.format("job_queue_id = %s"), [e.queue_id]),
        "search: key": (f"select {COLUMNS} from {j} where key = %s", [e.job_key]),
        "search: id": (f"select {COLUMNS} from {j} where id = %s", [e.job_id]),
        "search: error text": (
            newest.format("(last_error ilike %s or payload::text ilike %s)"),
            [f"%{e.error_text}%", f"%{e.error_text}%"],
        ),
        "job detail": (f"select * from {j} where id = %s", [e.job_id]),
        "failures": (
            f"select task_id, left(last_error, 60), count(*) from "
            f"(select task_id, last_error from {j} where locked_at is null and attempts > 0 "
            "order by id desc limit 10000) as f group by 1, 2 order by 3 desc limit 200",
            [],
        ),
        "queues": (sample, []),
        "tasks": (sample, []),
        "workers": (
            f"select locked_by, count(*), min(locked_at) from {j} "
            "where locked_at is not null and locked_by is not null group by 1",
            [],
        ),
        "sweep dry run": (
            f"select w.id from {e.schema}._private_workers as w "
            "where w.last_heartbeat_at < now() - interval '5 minutes' "
            f"and exists (select 1 from {j} as x where x.locked_by = w.id)",
            [],
        ),
        "bulk preview": (
            f"select count(*) from (select 1 from {j} where job_queue_id = %s limit 50001) as s",
            [e.bulk_queue_id],
        ),
    }


def floor_probe(cursor_factory, sql: str, params: list[Any]):
    from run import Outcome

    def fetch() -> Outcome:
        try:
            with cursor_factory() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
        except Exception as exc:
            return Outcome(type(exc).__name__)
        return Outcome(200, len(rows))

    return fetch


# --- the naive admin -----------------------------------------------------------------------

ADMIN = "/naive-admin/worker_admin/job/"


def naive_paths(e: Extra, targets) -> dict[str, str]:
    return {
        "overview": ADMIN,
        "jobs: all": ADMIN,
        "jobs: ready": f"{ADMIN}?is_available__exact=1",
        "jobs: scheduled": f"{ADMIN}?is_available__exact=1&o=5",  # ordered by run_at
        "jobs: locked": f"{ADMIN}?is_available__exact=0",
        "jobs: failed": f"{ADMIN}?is_available__exact=0&attempts__exact=25",
        "jobs: deep page": f"{ADMIN}?p={e.deep_pages + 1}",  # OFFSET 50 × deep_pages
        "jobs: hot task": f"{ADMIN}?task__id__exact={e.hot_task_id}",
        "jobs: rare task": f"{ADMIN}?task__id__exact={e.rare_task_id}",
        "jobs: queue": f"{ADMIN}?job_queue__id__exact={e.queue_id}",
        "search: key": f"{ADMIN}?q={e.job_key}",
        "search: id": f"{ADMIN}?q={e.job_id}",
        "search: error text": f"{ADMIN}?q={e.error_text.replace(' ', '+')}",
        "job detail": f"{ADMIN}{e.job_id}/change/",
        "workers": "/naive-admin/worker_admin/worker/",
    }


# --- bulk apply: preview, then the confirmed POST and its continuation steps ----------------


def bulk_apply_fetch(client, path: str, data: dict[str, str]):
    """Time the apply of a bulk reschedule: the preview POST (untimed), then the confirmed POST
    and every continuation step until the action is done (timed)."""
    import time

    from run import Outcome

    def fetch() -> Outcome:
        preview = client.post(path, data)
        match = TOKEN.search(preview.content.decode(errors="replace"))
        if preview.status_code != 200 or not match:
            return Outcome(f"preview {preview.status_code}")
        started = time.perf_counter()
        response = client.post(path, {**data, "token": match.group(1)})
        steps = 0
        while response.status_code == 200 and b"/jobs/actions/continue/" in response.content:
            batch = BATCH.search(response.content.decode(errors="replace"))
            response = client.post(
                "/jobs/actions/continue/", {"batch": batch.group(1) if batch else ""}
            )
            steps += 1
            if steps > 200:
                break
        elapsed = (time.perf_counter() - started) * 1000
        status = 200 if response.status_code == 302 else response.status_code
        return Outcome(status, steps, elapsed_ms=elapsed)

    return fetch
