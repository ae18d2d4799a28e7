"""Output helpers: aligned text tables for people, stable JSON-ready dicts for machines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from worker_admin.audit import job_image

JOB_ROW_KEYS = (
    "id",
    "task_identifier",
    "queue_name",
    "state",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "key",
    "locked_by",
)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; None shows as '-'."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def job_row(job, state: str | None = None) -> dict[str, Any]:
    """The list view of a job: the keys of JOB_ROW_KEYS, in that order."""
    image = job_image(job, with_payload=False)
    image["state"] = state if state is not None else getattr(job, "state", None)
    return {key: image[key] for key in JOB_ROW_KEYS}


def job_detail(job, state: str | None = None) -> dict[str, Any]:
    """Everything about one job (the audit log's job image plus state and updated_at)."""
    image = job_image(job, with_payload=True)
    image["state"] = state if state is not None else getattr(job, "state", None)
    image["updated_at"] = job.updated_at.isoformat() if job.updated_at else None
    return image
