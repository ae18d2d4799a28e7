"""Forms for job actions (reschedule's fields); validation mirrors the schema's column types.

Dates go in and out as ISO 8601 in UTC (`2026-12-04T09:30:00Z`), as the console shows them: a
time without an offset is read as UTC, whatever TIME_ZONE says, never in the browser's locale.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django import forms
from django.utils import timezone

from worker_admin import databases
from worker_admin.models import Job
from worker_admin.utils import SMALLINT_MAX, RescheduleJobOptions

RUN_AT_FUTURE_LIMIT = timedelta(days=3650)
RUN_AT_PAST_TOLERANCE = timedelta(minutes=5)
UTC_FORMAT_HINT = "YYYY-MM-DDTHH:MM:SSZ"


def utc_iso(moment: datetime) -> str:
    """2026-12-04T09:30:00Z: the form's own format, in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UTCDateTimeField(forms.DateTimeField):
    """An ISO 8601 date and time; without an offset it is UTC."""

    default_error_messages = {
        "invalid": f"Enter the date and time as ISO 8601 in UTC ({UTC_FORMAT_HINT}), "
        "e.g. 2026-12-04T09:30:00Z."
    }

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            moment = value
        else:
            text = str(value).strip()
            try:
                moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
            except ValueError:
                raise forms.ValidationError(
                    self.error_messages["invalid"], code="invalid"
                ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class RescheduleForm(forms.Form):
    run_at = UTCDateTimeField(required=False, label="Run at")
    priority = forms.IntegerField(
        min_value=-SMALLINT_MAX - 1, max_value=SMALLINT_MAX, required=False
    )
    attempts = forms.IntegerField(min_value=0, max_value=SMALLINT_MAX, required=False)
    max_attempts = forms.IntegerField(min_value=1, max_value=SMALLINT_MAX, required=False)
    # The run at the form was pre-filled with: sent back unchanged, it means "keep it", even when
    # it is in the past (a failed job's), which a new run at may not be.
    current_run_at = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    CHANGES = ("run_at", "priority", "attempts", "max_attempts")

    @classmethod
    def for_job(cls, job: Job) -> RescheduleForm:
        """Unbound, pre-filled with the job's current values."""
        run_at = utc_iso(job.run_at)
        return cls(
            initial={
                "run_at": run_at,
                "current_run_at": run_at,
                "priority": job.priority,
                "attempts": job.attempts,
                "max_attempts": job.max_attempts,
            }
        )

    def clean_run_at(self):
        run_at = self.cleaned_data.get("run_at")
        current = self.data.get("current_run_at")
        if run_at and current and str(self.data.get("run_at", "")).strip() == current:
            return None  # unchanged: the job keeps its run at
        if run_at and run_at > timezone.now() + RUN_AT_FUTURE_LIMIT:
            raise forms.ValidationError("Run at is more than ten years away; is that a typo?")
        if run_at and run_at < timezone.now() - RUN_AT_PAST_TOLERANCE:
            raise forms.ValidationError(
                "Run at is in the past; use “Run now” to run the jobs at once."
            )
        return run_at

    def clean(self):
        data = super().clean()
        if not self.errors and all(data.get(name) is None for name in self.CHANGES):
            raise forms.ValidationError(
                "Nothing to change: give a run at, priority, attempts or max attempts."
            )
        return data

    def options(self) -> RescheduleJobOptions:
        data = self.cleaned_data
        return RescheduleJobOptions(
            run_at=data.get("run_at"),
            priority=data.get("priority"),
            attempts=data.get("attempts"),
            max_attempts=data.get("max_attempts"),
        )


def reschedule_form(data, ids: list[int]) -> RescheduleForm:
    """The reschedule form of the preview page: bound to what was posted, or for one chosen
    job pre-filled with its current values (several jobs have no one value to show)."""
    if data.get("has_options"):
        return RescheduleForm(data)
    if len(ids) == 1:
        job = Job.objects.using(databases.current().alias).filter(id=ids[0]).first()
        if job is not None:
            return RescheduleForm.for_job(job)
    return RescheduleForm()
