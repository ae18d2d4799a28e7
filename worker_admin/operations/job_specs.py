"""What a job to add must be, checked the same way for every face (the add page, the batch
page, the JSON API): limits, JSON parsing with line and column, payload size, run_at sanity,
one batch item as a RawJobSpec. The final word on a spec is `JobSpec.validate()`. Nothing here
touches the database. Errors are Django's ValidationError (a sentence) or BatchItemError.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat as _filesizeformat
from django.utils import timezone

from worker_admin.utils import SMALLINT_MAX, InvalidJobSpec, JobKeyMode, JobSpec, RawJobSpec

SMALLINT_MIN = -SMALLINT_MAX - 1
IDENTIFIER_MAX = 128
QUEUE_MAX = 128
KEY_MAX = 512
FLAG_MAX = 512
PAYLOAD_MAX_BYTES = 1024 * 1024  # the payload as stored (its JSON text), per job
BATCH_MAX_BYTES = 5 * 1024 * 1024  # the pasted text or the uploaded file
BATCH_MAX_ITEMS = 10_000
BATCH_ERRORS_SHOWN = 20
RUN_AT_MAX_PAST = timedelta(days=365)
RUN_AT_MAX_FUTURE = timedelta(days=3653)  # ten years, leap days included

ITEM_FIELDS = (
    "identifier",
    "payload",
    "queue_name",
    "run_at",
    "max_attempts",
    "job_key",
    "job_key_mode",
    "priority",
    "flags",
)
KEY_MODE_CHOICES = [
    (JobKeyMode.REPLACE.value, "replace"),
    (JobKeyMode.PRESERVE_RUN_AT.value, "preserve_run_at"),
    (JobKeyMode.UNSAFE_DEDUPE.value, "unsafe_dedupe"),
]


# -- shared checks ----------------------------------------------------------------------------


def parse_json(text: str, what: str) -> Any:
    """json.loads with a message that names the line and column, and no NaN/Infinity (which
    PostgreSQL's json type refuses)."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON; use null or a number")

    def finite(number: str) -> float:
        value = float(number)
        if math.isinf(value):  # 1e309 reads as infinity, which cannot be stored either
            raise ValueError(f"the number {number[:20]} is too large")
        return value

    try:
        return json.loads(text, parse_constant=refuse, parse_float=finite)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except ValueError as exc:
        raise ValidationError(f"{what} is not valid JSON: {exc}.") from None
    except RecursionError:
        raise ValidationError(f"{what} is nested too deeply to be read.") from None


def stored_json(value: Any) -> str:
    """The JSON text the database will hold for `value`, exactly as WorkerUtils sends it."""
    return json.dumps(value, allow_nan=False, ensure_ascii=False)


def payload_size(payload: Any, what: str = "The payload") -> int:
    """Bytes of the payload as stored; refuses what PostgreSQL could not store."""
    try:
        return len(stored_json(payload).encode("utf-8"))
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode()
        raise ValidationError(
            f"{what} contains an unpaired surrogate escape ({bad}), which is not valid text."
        ) from None
    except RecursionError:
        raise ValidationError(f"{what} is nested too deeply to be stored.") from None


def check_payload_size(payload: Any, what: str = "The payload") -> int:
    size = payload_size(payload, what)
    if size > PAYLOAD_MAX_BYTES:
        raise ValidationError(
            f"{what} is {size:,} bytes as stored; the limit is {PAYLOAD_MAX_BYTES:,} bytes "
            f"({filesizeformat(PAYLOAD_MAX_BYTES)}). Keep large data elsewhere and pass a "
            "reference to it."
        )
    return size


def filesizeformat(size: int) -> str:
    """Django's filesizeformat with a plain space, for messages and the audit log."""
    return _filesizeformat(size).replace("\xa0", " ")


def _years(delta: timedelta) -> str:
    years = abs(delta).days / 365.25
    return "more than a year" if years < 1.5 else f"about {round(years)} years"


def check_run_at(run_at: datetime, what: str = "Run at") -> None:
    """Refuse a date that is surely a typo: more than a year back, or more than ten years on."""
    now = timezone.now()
    shown = timezone.localtime(run_at).strftime("%Y-%m-%d %H:%M %Z")
    if run_at < now - RUN_AT_MAX_PAST:
        raise ValidationError(
            f"{what} {shown} is {_years(now - run_at)} in the past; it may be at most one year "
            "back. Leave it empty to run the job now."
        )
    if run_at > now + RUN_AT_MAX_FUTURE:
        raise ValidationError(
            f"{what} {shown} is {_years(run_at - now)} in the future; it may be at most "
            "ten years ahead."
        )


def _control_character(value: str) -> str | None:
    for char in value:
        if unicodedata.category(char) == "Cc":
            return f"U+{ord(char):04X}"
    return None


def _canonical(identifier: str, payload: Any, spec: JobSpec) -> dict[str, Any]:
    """The values of one job, as JSON: what the preview shows, the hidden fields carry and the
    confirmation token hashes. Dict order is fixed here; the payload keeps its own order."""
    return {
        "identifier": identifier,
        "payload": payload,
        "queue_name": spec.queue_name,
        "run_at": spec.run_at.isoformat() if spec.run_at else None,
        "max_attempts": spec.max_attempts,
        "priority": spec.priority,
        "flags": list(spec.flags) if spec.flags is not None else None,
        "job_key": spec.job_key,
        "job_key_mode": spec.job_key_mode.value if spec.job_key_mode else None,
    }


# -- a batch item ---------------------------------------------------------------------------


class BatchItemError(ValueError):
    pass


def _text_or_none(item: dict, name: str, limit: int) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BatchItemError(f"{name} must be a string or null, not {_json_type(value)}")
    if not value:
        raise BatchItemError(f"{name} must not be empty (use null or leave it out)")
    if len(value) > limit:
        raise BatchItemError(f"{name} is {len(value):,} characters; the limit is {limit}")
    return value


def _int_or_none(item: dict, name: str, low: int, high: int) -> int | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BatchItemError(f"{name} must be a whole number, not {_json_type(value)}")
    if not low <= value <= high:
        raise BatchItemError(f"{name} must be between {low} and {high}; got {value}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _run_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BatchItemError(f"run_at must be an ISO 8601 string, not {_json_type(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BatchItemError(
            f"run_at {value[:40]!r} is not an ISO 8601 date and time "
            "(e.g. 2030-06-01T14:30:00+00:00)"
        ) from None
    if moment.utcoffset() is None:
        raise BatchItemError(f"run_at {value[:40]!r} has no UTC offset; add one, e.g. +00:00 or Z")
    try:
        check_run_at(moment, "run_at")
    except ValidationError as exc:
        raise BatchItemError(exc.messages[0].rstrip(".")) from None
    return moment


def _flags(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise BatchItemError(
            f'flags must be an array of strings like ["a", "b"], not {_json_type(value)}'
        )
    flags: list[str] = []
    for number, flag in enumerate(value):
        if not isinstance(flag, str) or not flag:
            raise BatchItemError(f"flags[{number}] must be a non-empty string")
        if len(flag) > FLAG_MAX:
            raise BatchItemError(
                f"flags[{number}] is {len(flag):,} characters; the limit is {FLAG_MAX}"
            )
        if flag not in flags:
            flags.append(flag)
    return flags


def batch_item(item: Any) -> RawJobSpec:
    """One item of a batch as a RawJobSpec, or BatchItemError saying what is wrong with it."""
    if not isinstance(item, dict):
        raise BatchItemError(
            f'must be an object like {{"identifier": "…"}}, not {_json_type(item)}'
        )
    unknown = [name for name in item if name not in ITEM_FIELDS]
    if unknown:
        raise BatchItemError(
            f"unknown field {unknown[0][:40]!r}; the fields are {', '.join(ITEM_FIELDS)}"
        )
    identifier = item.get("identifier")
    if not isinstance(identifier, str) or not identifier.strip():
        raise BatchItemError("identifier is required: the task name, a non-empty string")
    if "\x00" in identifier:
        raise BatchItemError("identifier must not contain NUL characters")
    if len(identifier) > IDENTIFIER_MAX:
        raise BatchItemError(
            f"identifier is {len(identifier):,} characters; the limit is {IDENTIFIER_MAX}"
        )
    payload = item.get("payload")
    if payload is None:
        payload = {}
    try:
        check_payload_size(payload, "payload")
    except ValidationError as exc:
        raise BatchItemError(exc.messages[0].rstrip(".")) from None
    key = _text_or_none(item, "job_key", KEY_MAX)
    mode_name = item.get("job_key_mode")
    mode = None
    if mode_name is not None:
        if mode_name == JobKeyMode.UNSAFE_DEDUPE.value:
            raise BatchItemError(
                "job_key_mode unsafe_dedupe is not allowed in a batch (the schema's add_jobs "
                "cannot do it); add that job on its own with the single-job form"
            )
        if mode_name not in (JobKeyMode.REPLACE.value, JobKeyMode.PRESERVE_RUN_AT.value):
            shown = mode_name[:40] if isinstance(mode_name, str) else _json_type(mode_name)
            raise BatchItemError(f"unknown job_key_mode {shown!r}: use replace or preserve_run_at")
        if key is None:
            raise BatchItemError("job_key_mode needs a job_key")
        mode = JobKeyMode(mode_name)
    spec = JobSpec(
        queue_name=_text_or_none(item, "queue_name", QUEUE_MAX),
        run_at=_run_at(item.get("run_at")),
        max_attempts=_int_or_none(item, "max_attempts", 1, SMALLINT_MAX),
        job_key=key,
        job_key_mode=mode,
        priority=_int_or_none(item, "priority", SMALLINT_MIN, SMALLINT_MAX),
        flags=_flags(item.get("flags")),
    )
    try:
        spec.validate()
    except InvalidJobSpec as exc:
        raise BatchItemError(str(exc).rstrip(".")) from None
    return RawJobSpec(identifier, payload, spec)


# -- a batch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """A checked batch: every item valid, each key once."""

    specs: list[RawJobSpec]

    def canonical(self) -> list[dict[str, Any]]:
        return [_canonical(raw.identifier, raw.payload, raw.spec) for raw in self.specs]

    def hidden_items(self) -> str:
        """The batch as compact JSON: parsing it again gives the same canonical()."""
        return json.dumps(self.canonical(), ensure_ascii=False, separators=(",", ":"))


def parse_batch(items: Any) -> Batch:
    """A JSON array of job objects as a Batch, all or nothing: ValidationError lists what is
    wrong (items are counted from 0)."""
    if not isinstance(items, list):
        raise ValidationError(
            f"The batch must be a JSON array of job objects, not {_json_type(items)}."
        )
    if not items:
        raise ValidationError("The batch is empty: give at least one job.")
    if len(items) > BATCH_MAX_ITEMS:
        raise ValidationError(
            f"The batch has {len(items):,} items; the limit is {BATCH_MAX_ITEMS:,} per "
            "batch. Split it into several."
        )
    problems: list[str] = []
    specs: list[RawJobSpec] = []
    first_with_key: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            spec = batch_item(item)
        except BatchItemError as exc:
            problems.append(f"item {index}: {exc}.")
            continue
        key = spec.spec.job_key
        if key is not None:
            if key in first_with_key:
                problems.append(
                    f"item {index}: job_key {key[:60]!r} is also the key of item "
                    f"{first_with_key[key]}; a batch can hold each key once."
                )
                continue
            first_with_key[key] = index
        specs.append(spec)
    if problems:
        shown = problems[:BATCH_ERRORS_SHOWN]
        if len(problems) > len(shown):
            shown.append(f"… and {len(problems) - len(shown):,} more.")
        count = len(problems)
        raise ValidationError(
            [
                f"{count:,} of the {len(items):,} items {'is' if count == 1 else 'are'} "
                "invalid, so the batch was refused as a whole (items are counted from 0):",
                *shown,
            ]
        )
    return Batch(specs)


def single_job(item: dict) -> RawJobSpec:
    """One job to add on its own: a batch item's checks, plus unsafe_dedupe (which a batch
    refuses), checked without the mode and then put back."""
    item = dict(item)
    dedupe = item.get("job_key_mode") == JobKeyMode.UNSAFE_DEDUPE.value
    if dedupe:
        if item.get("job_key") is None:
            raise BatchItemError("job_key_mode unsafe_dedupe needs a job_key")
        item.pop("job_key_mode")
    raw = batch_item(item)
    if not dedupe:
        return raw
    spec = replace(raw.spec, job_key_mode=JobKeyMode.UNSAFE_DEDUPE)
    try:
        spec.validate()
    except InvalidJobSpec as exc:
        raise BatchItemError(str(exc).rstrip(".")) from None
    return replace(raw, spec=spec)
