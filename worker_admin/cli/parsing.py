"""Parsing of CLI arguments: durations, run-at times, job ids, JSON payloads, job states.

Every helper raises `UsageError` with one sentence, before anything is written: bad input is
bad usage, exit status 2, like argparse's own complaints.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

from worker_admin.states import JobState
from worker_admin.utils import BIGINT_MAX, RUN_NOW, RunNow

_DURATION = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
}
LIST_STATES = ("all", *(state.value for state in JobState))
# A payload file larger than this is refused before it is read (the web's limit is the same).
PAYLOAD_FILE_LIMIT = 5 * 1024 * 1024


class UsageError(CommandError):
    """Bad input on the command line: exit status 2, nothing written."""

    def __init__(self, message: str) -> None:
        super().__init__(message, returncode=2)


def parse_duration(text: str) -> timedelta:
    """A bare integer is seconds; or an integer with s/sec/m/min/h/hr (and long forms)."""
    match = _DURATION.match(text or "")
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise UsageError(
            f"Invalid duration {text!r}: use a whole number of seconds or a number with "
            "s, sec, m, min, h or hr (for example 30s, 5m, 1h)."
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[unit])


def parse_run_at(text: str) -> datetime | RunNow:
    """`now` (the database's now()) or an RFC 3339 timestamp with a time zone."""
    if text.strip().lower() == "now":
        return RUN_NOW
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        value = None
    if value is None or value.utcoffset() is None:
        raise UsageError(
            f"Invalid --run-at {text!r}: use 'now' or an RFC 3339 time with a time zone, "
            "for example 2025-01-31T09:00:00Z."
        )
    return value


def parse_ids(values: list[str] | None) -> list[int]:
    """Job ids from the command line: at least one, each a positive whole number, no repeats."""
    if not values:
        raise UsageError("Give at least one job id.")
    ids = []
    for value in values:
        text = value.strip()
        if not text.isdigit() or not 1 <= int(text) <= BIGINT_MAX:
            raise UsageError(f"Invalid job id {value!r}: job ids are positive whole numbers.")
        ids.append(int(text))
    return list(dict.fromkeys(ids))


def parse_payload(text: str | None, *, source: str = "--payload") -> Any:
    """The --payload JSON document (None when not given)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"The {source} is not valid JSON: {exc}.") from None


def read_payload_file(name: str, stdin) -> str:
    """The text of --payload-file: a path, or `-` for standard input."""
    if name == "-":
        text = stdin.read(PAYLOAD_FILE_LIMIT + 1)
    else:
        path = Path(name)
        try:
            if path.stat().st_size > PAYLOAD_FILE_LIMIT:
                raise UsageError(f"The --payload-file {name!r} is larger than 5 MB.")
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"The --payload-file {name!r} does not exist.") from None
        except IsADirectoryError:
            raise UsageError(f"The --payload-file {name!r} is a directory.") from None
        except UnicodeDecodeError:
            raise UsageError(f"The --payload-file {name!r} is not UTF-8 text.") from None
        except OSError as exc:
            raise UsageError(f"Cannot read --payload-file {name!r}: {exc.strerror}.") from None
    if len(text) > PAYLOAD_FILE_LIMIT:
        raise UsageError("The payload on standard input is larger than 5 MB.")
    return text


def parse_state(text: str) -> JobState | None:
    """A job state for `list`; `all` means no filter."""
    value = text.strip().lower()
    if value not in LIST_STATES:
        raise UsageError(f"Unknown state {text!r}: use one of {', '.join(LIST_STATES)}.")
    return None if value == "all" else JobState(value)
