"""Workers: registered heartbeating workers, stale ones, and every lock holder; one page per
worker or lock holder."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin.fleet import DEFAULT_THRESHOLD, fleet
from worker_admin.history import series
from worker_admin.history.charts import heartbeat_chart
from worker_admin.history.entity_series import read_heartbeats
from worker_admin.index_advice import LOCKED, guarded, hints
from worker_admin.replica import read_alias
from worker_admin.roles import can_run_maintenance
from worker_admin.schema import read_capabilities
from worker_admin.views.polling import live_page
from worker_admin.worker_detail import MAX_ID_LENGTH, worker_detail

THRESHOLDS = [1, 2, 5, 10, 15, 30, 60]  # minutes
# Heartbeats are kept at a minute's resolution for a day (history/retention.py).
HEARTBEAT_RANGES = ("1h", "24h")
# A fleet of a thousand workers is a page no one reads: each table shows the rows that need
# attention first (stale workers, the oldest locks) up to this many, and links to the rest.
ROWS_SHOWN = 100
WORKERS = "worker_admin/workers.html"


def _threshold(request) -> tuple[int, str | None]:
    raw = request.GET.get("threshold", "")
    if raw.isascii() and raw.isdigit() and len(raw) < 4 and int(raw) in THRESHOLDS:
        return int(raw), None
    if raw:
        problem = f"Ignored the threshold “{raw[:20]}”: choose one of the listed values."
        return DEFAULT_THRESHOLD, problem
    return DEFAULT_THRESHOLD, None


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def workers(request):
    caps = read_capabilities()
    minutes, problem = _threshold(request)
    stale_only = request.GET.get("stale") == "1"
    context = {
        "active": "workers",
        "title": "Workers",
        "thresholds": THRESHOLDS,
        "minutes": minutes,
        "problem": problem,
        "can_maintain": can_run_maintenance(request.user),
        "stale_only": stale_only,
    }
    if not caps.usable:
        return render(request, WORKERS + ("#workers-body" if request.htmx else ""), context)
    limit = None if request.GET.get("all") == "1" else ROWS_SHOWN

    def build() -> dict:
        with guarded(read_alias(), LOCKED, reading="the workers and lock holders"):
            found = fleet(
                read_alias(), timedelta(minutes=minutes), has_workers_table=caps.has_workers_table
            )
        listed = [w for w in found.workers or [] if w.stale or not stale_only]
        holders = [h for h in found.holders if h.stale or not stale_only]
        return context | {
            "fleet": found,
            "listed_workers": listed,
            "listed_holders": holders,
            "shown_workers": listed[:limit],
            "shown_holders": holders[:limit],
            "rows_shown": limit,
        }

    # One rendering of the fleet per interval for every viewer with the same role and URL (its
    # force-unlock buttons submit a form outside it): refreshes and full pages alike. The index
    # note is outside the live part: not looked up for a refresh.
    page = context if request.htmx else context | {"index_hints": hints(read_alias(), LOCKED)}
    return live_page(request, WORKERS, "workers-body", build, page, slow=False)


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def worker(request, worker_id: str):
    """One worker or lock holder. The id is any text a worker library wrote in locked_by (it
    comes URL-encoded); one that is neither registered nor holding a lock is a 404."""
    caps = read_capabilities()
    minutes, problem = _threshold(request)
    context = {
        "active": "workers",
        "title": f"Worker {worker_id[:80]}",
        "thresholds": THRESHOLDS,
        "minutes": minutes,
        "problem": problem,
        "can_maintain": can_run_maintenance(request.user),
    }
    if caps.usable:
        if len(worker_id) > MAX_ID_LENGTH or "\x00" in worker_id:
            raise Http404("There is no worker with this id: it is too long or holds a NUL.")
        with guarded(read_alias(), LOCKED, reading="the jobs this worker holds"):
            detail = worker_detail(
                read_alias(),
                worker_id,
                timedelta(minutes=minutes),
                has_workers_table=caps.has_workers_table,
            )
        if not detail.exists:
            raise Http404(
                f"No worker “{worker_id[:200]}” is registered or holds a lock now: it may have "
                "stopped, or its locks were freed."
            )
        context["worker"] = detail
        context["index_hints"] = [] if request.htmx else hints(read_alias(), LOCKED)
        if caps.has_workers_table:
            context |= _heartbeat_history(request, worker_id, minutes)
    template = "worker_admin/worker.html"
    if request.htmx:
        template += "#worker-body"
    return render(request, template, context)


def _heartbeat_history(request, worker_id: str, minutes: int) -> dict:
    """The worker's recorded heartbeat ages over the last hour or day, as a chart."""
    key = request.GET.get("range")
    range_ = series.RANGES[key if key in HEARTBEAT_RANGES else HEARTBEAT_RANGES[0]]
    history = read_heartbeats(worker_id, range_)
    return {
        "heartbeats": history,
        "heartbeat_chart": heartbeat_chart(history, minutes * 60),
        "heartbeat_ranges": [series.RANGES[k] for k in HEARTBEAT_RANGES],
        "history_interval": settings.HISTORY_COUNTS_INTERVAL_SECONDS,
        "heartbeat_workers": settings.HISTORY_HEARTBEAT_WORKERS,
    }
