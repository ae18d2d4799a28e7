"""The Python counterpart of Graphile Worker's Rust `WorkerUtils`.

One object bound to a database alias and a worker schema. Reads go through the read-only models;
writes call the schema's own SQL functions with bound parameters, one transaction each. Views,
management commands and the JSON API all call this module and run no SQL of their own.

Difference from the Rust documentation, on purpose: `reschedule_jobs` follows the SQL function,
which keeps a job's run_at when none is given (the Rust docs say "run immediately"). Ask for
"now" explicitly with `RUN_NOW` / `RescheduleJobOptions.run_now()`.

The job actions (complete, fail, reschedule, remove) obey the schema's 4-hour rule: a job locked
less than four hours ago belongs to a live worker and is silently skipped by the SQL function. Their
results say so (`JobActionResult.summary`: "changed N of M; K skipped because a worker holds
them; J not found") instead of pretending every id was acted on. See GRAPHILE_WORKER.md §4.
"""

from __future__ import annotations

from typing import Any

from worker_admin.utils.client import WorkerUtils, _json_columns
from worker_admin.utils.results import ForceUnlockResult, JobActionResult, RemoveJobResult
from worker_admin.utils.specs import (
    ANALYZE_AFTER_JOBS,
    BIGINT_MAX,
    MAX_IDS_PER_CALL,
    MAX_REASON_LENGTH,
    MAX_WORKER_ID_LENGTH,
    RUN_NOW,
    SMALLINT_MAX,
    FeatureUnavailable,
    InvalidJobAction,
    InvalidJobSpec,
    JobKeyMode,
    JobSpec,
    RawJobSpec,
    RescheduleJobOptions,
    RunNow,
    TaskPayload,
    WorkerStatus,
    WorkerUtilsError,
    _check_text,
    _list_argument,
    task_payload,
)

__all__ = [
    "ANALYZE_AFTER_JOBS",
    "BIGINT_MAX",
    "MAX_IDS_PER_CALL",
    "MAX_REASON_LENGTH",
    "MAX_WORKER_ID_LENGTH",
    "RUN_NOW",
    "SMALLINT_MAX",
    "FeatureUnavailable",
    "ForceUnlockResult",
    "InvalidJobAction",
    "InvalidJobSpec",
    "JobActionResult",
    "JobKeyMode",
    "JobSpec",
    "RawJobSpec",
    "RemoveJobResult",
    "RescheduleJobOptions",
    "RunNow",
    "TaskPayload",
    "WorkerStatus",
    "WorkerUtils",
    "WorkerUtilsError",
    "_check_text",
    "_json_columns",
    "_list_argument",
    "task_payload",
]

# Re-exported lazily: worker_admin.recovery imports this module, so importing it here at load
# time would be circular.
_RECOVERY_EXPORTS = frozenset(
    {
        "CleanupPreview",
        "CleanupResult",
        "CleanupTask",
        "RecoverableJob",
        "SweepStaleWorkersOptions",
        "SweepStaleWorkersResult",
        "WorkerRecoveryConfig",
    }
)


def __getattr__(name: str) -> Any:
    if name in _RECOVERY_EXPORTS:
        from worker_admin import recovery

        return getattr(recovery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
