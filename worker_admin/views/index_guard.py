"""The page for a read that ran out of its index budget (worker_admin/index_advice.py).

HTTP 504, because the answer did not come in time; but not the generic "took too long" page:
this one says which read needs which opt-in index, how to create it, and which narrower
filters a page offers. A guarded read changes nothing, so the page never speaks of a change
or of rolling one back. An htmx request (a poll, a filter change) gets the message as a
fragment with 200, retargeted onto the element it asked for, so it shows in place and the
poll that asked stops (the element that carried it is replaced).
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.shortcuts import render

from worker_admin.filters import JobFilters
from worker_admin.index_advice import IndexNeeded
from worker_admin.indexes import INDEXES
from worker_admin.roles import can_run_maintenance

logger = logging.getLogger(__name__)

TEMPLATE = "worker_admin/index_needed.html"


def index_needed_response(request, exc: IndexNeeded):
    logger.warning(
        "Unindexed read over budget on %s %s: needs %s",
        request.method,
        request.path,
        ", ".join(need.index for need in exc.needs),
    )
    context = {
        "title": "This needs an index",
        "error": exc,
        "needs": [(need, INDEXES[need.index]) for need in exc.needs],
        "narrow": exc.narrow,
        "can_maintain": can_run_maintenance(request.user),
    }
    target = request.headers.get("HX-Target", "") if request.htmx else ""
    if not request.htmx:
        return render(request, TEMPLATE, context, status=504)
    context["target_id"] = target if target.isascii() and target.replace("-", "").isalnum() else ""
    response = render(request, TEMPLATE + "#index-needed", context, status=200)
    if context["target_id"]:
        response["HX-Retarget"] = "#" + context["target_id"]
        response["HX-Reswap"] = "outerHTML"
    else:
        response["HX-Retarget"] = "#main"
        response["HX-Reswap"] = "innerHTML"
    return response


def jobs_narrowing(path: str, filters: JobFilters) -> list[tuple[str, str]]:
    """Narrower or cheaper variants of a jobs list: the ready and scheduled tabs (which
    Graphile Worker's own index serves), and the list without each filter that needs an index."""
    links = []
    for state in ("ready", "scheduled"):
        if filters.state != state:
            query = filters.query(state=state, sort=None, cursor=None)
            links.append((f"Only {state} jobs, with the same filters", _url(path, query)))
    for name, label in (("task", "task"), ("queue", "queue"), ("locked_by", "lock holder")):
        if filters.values.get(name):
            query = filters.query(**{name: None, "cursor": None})
            links.append((f"Without the {label} filter", _url(path, query)))
    return links


def _url(path: str, query: dict) -> str:
    return path + ("?" + urlencode(query) if query else "")
