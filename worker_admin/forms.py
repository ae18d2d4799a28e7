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
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.utils import timezone

from worker_admin.operations.job_specs import (  # noqa: F401 (the forms' names)
    BATCH_ERRORS_SHOWN,
    BATCH_MAX_BYTES,
    BATCH_MAX_ITEMS,
    FLAG_MAX,
    IDENTIFIER_MAX,
    ITEM_FIELDS,
    KEY_MAX,
    KEY_MODE_CHOICES,
    PAYLOAD_MAX_BYTES,
    QUEUE_MAX,
    RUN_AT_MAX_FUTURE,
    RUN_AT_MAX_PAST,
    SMALLINT_MIN,
    BatchItemError,
    _canonical,
    _control_character,
    _json_type,
    batch_item,
    check_payload_size,
    check_run_at,
    filesizeformat,
    parse_batch,
    parse_json,
    payload_size,
    stored_json,
)
from worker_admin.utils import SMALLINT_MAX, InvalidJobSpec, JobKeyMode, JobSpec, RawJobSpec


def _spec_error(exc: InvalidJobSpec) -> ValidationError:
    return ValidationError(str(exc))


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
        self.specs = parse_batch(parse_json(text, "The batch")).specs
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
