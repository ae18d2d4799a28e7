"""Failures: failed and retrying jobs grouped by task and normalised error message.

The grouping is one shared snapshot per database, schema and filter (worker_admin/snapshots.py),
taken at most once per SHARED_SNAPSHOT_SECONDS by whichever viewer asks first: twenty people
watching the page during an incident cost what one does. A poll of unchanged groups is answered
304 (views/polling.py). Its ETag comes from the groups and the minute, not from the database
clock itself: the groups' "last seen … ago" and the "as of" stamp a tab keeps are those of when
it first saw them, but never more than AGES_KEPT_SECONDS old, so a quiet tab does not go on
saying "1s ago" for an hour.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_safe

from worker_admin import databases, failures, snapshots
from worker_admin.index_advice import FAILING, guarded
from worker_admin.replica import read_alias
from worker_admin.schema import read_capabilities
from worker_admin.stats import is_large
from worker_admin.views.polling import live_fragment

AGES_KEPT_SECONDS = 60
TEMPLATE = "worker_admin/failures.html"
FRAGMENT = TEMPLATE + "#failure-groups"


@dataclass(frozen=True)
class SharedReport:
    """What the page shows, as one snapshot keeps it (pickled into the shared cache)."""

    report: failures.FailureReport | None  # None: the grouping hit the statement timeout
    version: str  # the groups' digest and the minute: unchanged groups keep it for a minute


@require_safe  # a read: PUT, PATCH, DELETE and POST get 405
def failure_groups(request):
    context = {"active": "failures", "title": "Failures", "states": list(failures.FailureState)}
    caps = read_capabilities()
    if not caps.usable:
        return render(request, FRAGMENT if request.htmx else TEMPLATE, context)
    task = request.GET.get("task", "").strip()[:128]
    if "\x00" in task:  # PostgreSQL text cannot hold NUL: no task has it in its name
        context["problem"] = "Ignored the task filter: it contains a NUL character."
        task = ""
    state = failures.FailureState.parse(request.GET.get("state", ""))
    context.update(
        filters={"task": task, "state": state.value},
        filtered=bool(task) or state != failures.FailureState.BOTH,
        usable=True,
    )
    alias = read_alias()
    # A full page on a large table nobody watched lately shows itself at once; its first
    # refresh (on load) brings the groups, taken right after this response.
    wait = bool(request.htmx) or not is_large(alias)
    with guarded(alias, FAILING, reading="the failing jobs"):
        found = shared_report(alias, caps.schema, task=task, state=state, wait=wait)
    if found is None:
        return render(request, TEMPLATE, context | {"counting": True})
    shared = found.value
    context.update(report=shared.report, too_slow=shared.report is None)
    if request.htmx:
        return live_fragment(request, FRAGMENT, context, [shared.version])
    return render(request, TEMPLATE, context)


def shared_report(
    alias: str, schema: str, *, task: str, state: failures.FailureState, wait: bool = True
) -> snapshots.Snapshot[SharedReport] | None:
    """The failure groups for this filter, shared by every viewer for one interval.

    The key names everything that changes the answer: the worker database (several may share
    a server, or even an alias with another schema), the alias read from (the replica's groups
    may lag the primary's), the schema, the task and the state. With `wait=False`, None when
    no usable snapshot exists: it is then taken right after the response (snapshots.prepare).
    """
    key = json.dumps(["failures", databases.current().name, alias, schema, task, state.value])
    fetch = snapshots.shared if wait else snapshots.prepare
    return fetch(key, partial(_take, alias, task, state), seconds=settings.SHARED_SNAPSHOT_SECONDS)


def _take(alias: str, task: str, state: failures.FailureState) -> SharedReport:
    try:
        report = failures.failure_groups(
            alias, task=task, state=state, example_length=failures.EXCERPT_LENGTH
        )
    except failures.FailureGroupingTooSlow:
        # Shared as well: twenty viewers must not each run into the timeout.
        return SharedReport(None, "too-slow")
    ages_of = int(report.now.timestamp() // AGES_KEPT_SECONDS)
    shown = (report.groups, report.truncated, report.newest, ages_of)
    return SharedReport(report, snapshots.version_of(shown))
