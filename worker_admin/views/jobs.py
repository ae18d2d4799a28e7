"""Jobs: a list by state with keyset paging, and a job's detail.

The full triage console (every filter, search, estimates for huge tables) builds on this; the
essentials are here: state tabs with counts, task and queue filters, newest first, and pages
that cost the same at any depth because they seek by id instead of counting an OFFSET.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count
from django.http import Http404
from django.shortcuts import render

from worker_admin.models import Job
from worker_admin.schema import capabilities
from worker_admin.states import RETRYING, STATE_PREDICATES, JobState
from worker_admin.stats import database_now

PAGE_SIZE = 50
TABS = [("all", "All"), *((s.value, s.label) for s in JobState), ("retrying", "Retrying")]


def _filtered(request) -> tuple[dict, object]:
    filters = {
        "task": request.GET.get("task", "").strip()[:128],
        "queue": request.GET.get("queue", "").strip()[:128],
    }
    jobs = Job.objects.using(settings.WORKER_DATABASE)
    if filters["task"]:
        jobs = jobs.for_task(filters["task"])
    if filters["queue"]:
        jobs = jobs.in_queue(filters["queue"])
    return filters, jobs


def _tab_counts(jobs) -> dict[str, int]:
    aggregates = {state.value: Count("id", filter=q) for state, q in STATE_PREDICATES.items()}
    aggregates["retrying"] = Count("id", filter=RETRYING)
    aggregates["all"] = Count("id")
    return jobs.aggregate(**aggregates)


def _cursor(request, name: str) -> int | None:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


def job_list(request):
    context = {"active": "jobs", "title": "Jobs", "tabs": TABS}
    if not capabilities().usable:
        return render(request, "worker_admin/jobs.html", context)
    state = request.GET.get("state", "all")
    if state not in dict(TABS):
        state = "all"
    filters, jobs = _filtered(request)
    counts = _tab_counts(jobs)
    if state == "retrying":
        jobs = jobs.retrying()
    elif state != "all":
        jobs = jobs.in_state(state)
    jobs = jobs.with_state().select_related("task", "job_queue").defer("payload")
    after, before = _cursor(request, "after"), _cursor(request, "before")
    if before is not None:  # going back: the page of newer ids just above `before`
        page = list(jobs.filter(id__gt=before).order_by("id")[: PAGE_SIZE + 1])[::-1]
        has_newer, has_older = len(page) > PAGE_SIZE, True
        page = page[-PAGE_SIZE:] if has_newer else page
    else:
        if after is not None:
            jobs = jobs.filter(id__lt=after)
        page = list(jobs.order_by("-id")[: PAGE_SIZE + 1])
        has_older, has_newer = len(page) > PAGE_SIZE, after is not None
        page = page[:PAGE_SIZE]
    context.update(
        state=state,
        filters=filters,
        counts=counts,
        jobs=page,
        now=database_now(settings.WORKER_DATABASE),
        newer_cursor=page[0].id if page and has_newer else None,
        older_cursor=page[-1].id if page and has_older else None,
        filter_query=_query(state=state, **filters),
    )
    template = "worker_admin/jobs.html#job-table" if request.htmx else "worker_admin/jobs.html"
    return render(request, template, context)


def _query(**params: str) -> str:
    return urlencode({k: v for k, v in params.items() if v and v != "all"})


def job_detail(request, job_id: int):
    if not capabilities().usable:
        return render(request, "worker_admin/job_detail.html", {"active": "jobs", "title": "Job"})
    try:
        job = (
            Job.objects.using(settings.WORKER_DATABASE)
            .with_state()
            .select_related("task", "job_queue")
            .get(id=job_id)
        )
    except Job.DoesNotExist:
        raise Http404(
            f"There is no job {job_id}: it may have completed (completed jobs are deleted)."
        ) from None
    now = database_now(settings.WORKER_DATABASE)
    lock_age = now - job.locked_at if job.locked_at else None
    return render(
        request,
        "worker_admin/job_detail.html",
        {
            "active": "jobs",
            "title": f"Job {job.id}",
            "job": job,
            "now": now,
            "lock_age": lock_age,
            "lock_near_release": lock_age is not None and lock_age.total_seconds() > 3 * 3600,
        },
    )
