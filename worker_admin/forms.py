"""The forms that add jobs: one job from typed fields, or a batch from pasted or uploaded JSON.

They turn a browser's text into the arguments of `WorkerUtils.add_raw_job` / `add_raw_jobs` and
say, in words an operator can act on, what is wrong and where ("payload: … at line 3, column
14", "item 12: priority must be between …"). The final word on a spec is `JobSpec.validate()`,
which both forms call, so the web, the CLI and the Python API refuse the same things. A batch is
all or nothing: one bad item refuses the whole batch. Nothing here touches the database.

Each form also gives its values in a canonical form (`canonical()`): the preview carries them in
hidden fields and the confirmation token signs a hash of them (see views/add.py).
"""

from __future__ import annotations

import json
import math
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
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


def _spec_error(exc: InvalidJobSpec) -> ValidationError:
    return ValidationError(str(exc))


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


# -- one job ----------------------------------------------------------------------------------


def _between(label: str, low: int, high: int, why: str) -> dict[str, str]:
    message = f"{label} must be between {low} and {high} ({why}); got %(show_value)s."
    return {
        "min_value": message,
        "max_value": message,
        "invalid": f"{label} must be a whole number.",
    }


class AddJobForm(forms.Form):
    """One job. Empty optional fields mean the schema's defaults (queue none, run now, 25
    attempts, priority 0, no flags, no key). run_at is a datetime-local value, read in the
    server's TIME_ZONE."""

    identifier = forms.CharField(
        max_length=IDENTIFIER_MAX,
        error_messages={
            "required": "Give the task identifier: the name a worker knows the task by.",
            "max_length": "The task identifier is %(show_value)d characters; "
            "the limit is %(limit_value)d.",
        },
    )
    payload = forms.CharField(required=False, strip=False, widget=forms.Textarea, initial="{}")
    queue = forms.CharField(
        required=False,
        max_length=QUEUE_MAX,
        error_messages={
            "max_length": "The queue name is %(show_value)d characters; the limit is "
            "%(limit_value)d."
        },
    )
    run_at = forms.DateTimeField(
        required=False,
        error_messages={
            "invalid": "Run at must be a date and time such as 2030-06-01 14:30 (server time)."
        },
    )
    max_attempts = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=SMALLINT_MAX,
        error_messages=_between(
            "Max attempts", 1, SMALLINT_MAX, "how many times a worker may try the job"
        ),
    )
    priority = forms.IntegerField(
        required=False,
        min_value=SMALLINT_MIN,
        max_value=SMALLINT_MAX,
        error_messages=_between("Priority", SMALLINT_MIN, SMALLINT_MAX, "lower runs first"),
    )
    flags = forms.CharField(required=False)
    job_key = forms.CharField(
        required=False,
        strip=False,
        max_length=KEY_MAX,
        error_messages={
            "max_length": "The job key is %(show_value)d characters; the limit is %(limit_value)d."
        },
    )
    job_key_mode = forms.ChoiceField(
        required=False,
        choices=KEY_MODE_CHOICES,
        error_messages={
            "invalid_choice": "Unknown key mode %(value)s: choose replace, preserve_run_at or "
            "unsafe_dedupe."
        },
    )

    def _plain_text(self, name: str, label: str) -> str:
        value = self.cleaned_data.get(name) or ""
        bad = _control_character(value)
        if bad:
            raise ValidationError(f"{label} contains a control character ({bad}).")
        return value

    def clean_identifier(self) -> str:
        return self._plain_text("identifier", "The task identifier")

    def clean_queue(self) -> str | None:
        return self._plain_text("queue", "The queue name") or None

    def clean_payload(self) -> Any:
        text = self.cleaned_data.get("payload") or ""
        if not text.strip():
            return {}
        raw = len(text.encode("utf-8"))
        if raw > 4 * PAYLOAD_MAX_BYTES:  # not worth parsing
            raise ValidationError(
                f"The payload is {filesizeformat(raw)}; the limit is "
                f"{filesizeformat(PAYLOAD_MAX_BYTES)}."
            )
        payload = parse_json(text, "The payload")
        if payload is None:
            payload = {}  # the schema stores a null payload as {}
        check_payload_size(payload)
        return payload

    def clean_run_at(self) -> datetime | None:
        run_at = self.cleaned_data.get("run_at")
        if run_at is not None:
            check_run_at(run_at)
        return run_at

    def clean_flags(self) -> list[str] | None:
        text = self.cleaned_data.get("flags") or ""
        if not text.strip():
            return None
        parts = [part.strip() for part in text.split(",")]
        flags: list[str] = []
        for number, flag in enumerate(parts, start=1):
            if not flag:
                raise ValidationError(
                    f"Flag {number} of {len(parts)} is empty: remove the extra comma."
                )
            if len(flag) > FLAG_MAX:
                raise ValidationError(
                    f"Flag {number} is {len(flag):,} characters; the limit is {FLAG_MAX}."
                )
            bad = _control_character(flag)
            if bad:
                raise ValidationError(f"Flag {number} contains a control character ({bad}).")
            if flag not in flags:
                flags.append(flag)
        return flags

    def clean_job_key(self) -> str | None:
        key = self.cleaned_data.get("job_key") or ""
        if not key:
            return None
        if not key.strip():
            raise ValidationError(
                "The job key is only spaces: leave it empty for a job without a key."
            )
        bad = _control_character(key)
        if bad:
            raise ValidationError(f"The job key contains a control character ({bad}).")
        return key

    def clean_job_key_mode(self) -> JobKeyMode:
        return JobKeyMode(self.cleaned_data.get("job_key_mode") or JobKeyMode.REPLACE)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        mode = data.get("job_key_mode")
        if "job_key" in data and data["job_key"] is None and mode not in (None, JobKeyMode.REPLACE):
            self.add_error(
                "job_key_mode",
                f"Key mode {mode.value} only applies to a job with a key: give a job key, or "
                "leave the mode at replace.",
            )
        if not self.errors:
            try:
                self.to_spec()[2].validate()
            except InvalidJobSpec as exc:
                raise _spec_error(exc) from None
        return data

    def to_spec(self) -> tuple[str, Any, JobSpec]:
        """(identifier, payload, JobSpec) for `WorkerUtils.add_raw_job`; only after is_valid()."""
        data = self.cleaned_data
        key = data.get("job_key")
        spec = JobSpec(
            queue_name=data.get("queue"),
            run_at=data.get("run_at"),
            max_attempts=data.get("max_attempts"),
            job_key=key,
            job_key_mode=data.get("job_key_mode") if key else None,
            priority=data.get("priority"),
            flags=data.get("flags"),
        )
        return data["identifier"], data["payload"], spec

    def canonical(self) -> dict[str, Any]:
        return _canonical(*self.to_spec())

    def hidden_values(self) -> dict[str, str]:
        """The validated values as form fields: posting them back gives the same canonical()."""
        identifier, payload, spec = self.to_spec()
        run_at = ""
        if spec.run_at:
            local = timezone.localtime(spec.run_at)
            run_at = local.strftime(
                "%Y-%m-%dT%H:%M:%S.%f" if local.microsecond else "%Y-%m-%dT%H:%M:%S"
            )
        number = "" if spec.max_attempts is None else str(spec.max_attempts)
        return {
            "identifier": identifier,
            "payload": stored_json(payload),
            "queue": spec.queue_name or "",
            "run_at": run_at,
            "max_attempts": number,
            "priority": "" if spec.priority is None else str(spec.priority),
            "flags": ", ".join(spec.flags or ()),
            "job_key": spec.job_key or "",
            "job_key_mode": spec.job_key_mode.value if spec.job_key_mode else "",
        }


# -- a batch ----------------------------------------------------------------------------------


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


class BatchAddForm(forms.Form):
    """A JSON array of job objects, pasted (`items`) or uploaded (`file`).

    Items are counted from 0, as in JSON. Every item is checked and the batch is refused as a
    whole if any of them is bad: the preview and the write never see a partial batch.
    """

    items = forms.CharField(required=False, strip=False, widget=forms.Textarea)
    file = forms.FileField(required=False, error_messages={"empty": "The uploaded file is empty."})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.specs: list[RawJobSpec] = []
        self.source = ""

    def _read(self) -> tuple[str, str]:
        text = self.cleaned_data.get("items") or ""
        upload = self.cleaned_data.get("file")
        if upload and text.strip():
            raise ValidationError("Paste a batch or choose a file, not both.")
        limit = filesizeformat(BATCH_MAX_BYTES)
        if upload:
            if upload.size > BATCH_MAX_BYTES:
                raise ValidationError(
                    f"The file {upload.name} is {filesizeformat(upload.size)}; the limit is "
                    f"{limit}. Split the batch."
                )
            try:
                return upload.read().decode("utf-8-sig"), f"file {upload.name}"
            except UnicodeDecodeError:
                raise ValidationError(f"The file {upload.name} is not UTF-8 text.") from None
        if not text.strip():
            raise ValidationError("Paste a JSON array of jobs, or choose a .json file.")
        size = len(text.encode("utf-8"))
        if size > BATCH_MAX_BYTES:
            raise ValidationError(
                f"The pasted batch is {filesizeformat(size)}; the limit is {limit}. Split it."
            )
        return text, "pasted text"

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        text, self.source = self._read()
        items = parse_json(text, "The batch")
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
        self.specs = specs
        return data

    def canonical(self) -> list[dict[str, Any]]:
        return [_canonical(raw.identifier, raw.payload, raw.spec) for raw in self.specs]

    def hidden_items(self) -> str:
        """The validated batch as compact JSON: posting it back as `items` gives the same
        canonical()."""
        return json.dumps(self.canonical(), ensure_ascii=False, separators=(",", ":"))


class LoginForm(AuthenticationForm):
    """Django's login form, refusing an over-long user name before authentication.

    AuthenticationForm only copies the user model's max_length onto the field and its widget,
    after the field's validators were built, so a 10,000-character name reached authenticate()
    and django-axes, whose failure record holds 255 characters: a 500 instead of "do not match".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length))
