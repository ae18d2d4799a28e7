"""Job actions: run now, retry, reschedule, complete, permanently fail, remove by key, on ids or
on every job matching a filter (up to BULK_ACTION_LIMIT).

    request = build_request(kind, target, reason=..., options=...)   # checked input
    shown = preview(actor, request)        # pinned jobs, before -> after, warnings, token
    outcome = apply(actor, shown.token, reason=..., request=request)  # once; chunked; audited

`Refused` (errors.py) carries the sentence for a request that cannot be previewed or applied.
"""

from worker_admin.operations.job_actions.applying import CHUNK, Outcome, apply, resume
from worker_admin.operations.job_actions.kinds import ACTIONS, ActionInfo, ActionKind
from worker_admin.operations.job_actions.previewing import (
    KIND,
    PREVIEW_ROWS,
    Change,
    Preview,
    preview,
    target_queryset,
)
from worker_admin.operations.job_actions.request import (
    MAX_EXPLICIT_IDS,
    REASON_MAX,
    ActionRequest,
    Target,
    action_kind,
    build_request,
    check_reason,
    filter_target,
    parse_ids,
    reschedule_options,
)

__all__ = [
    "ACTIONS",
    "CHUNK",
    "KIND",
    "MAX_EXPLICIT_IDS",
    "PREVIEW_ROWS",
    "REASON_MAX",
    "ActionInfo",
    "ActionKind",
    "ActionRequest",
    "Change",
    "Outcome",
    "Preview",
    "Target",
    "action_kind",
    "apply",
    "build_request",
    "check_reason",
    "filter_target",
    "parse_ids",
    "preview",
    "reschedule_options",
    "resume",
    "target_queryset",
]
