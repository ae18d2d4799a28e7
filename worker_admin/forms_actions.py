"""Forms for job actions (reschedule's fields); validation mirrors the schema's column types."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from worker_admin.utils import SMALLINT_MAX, RescheduleJobOptions

RUN_AT_FUTURE_LIMIT = timedelta(days=3650)
RUN_AT_PAST_TOLERANCE = timedelta(minutes=5)


class RescheduleForm(forms.Form):
    run_at = forms.DateTimeField(required=False, label="Run at")
    priority = forms.IntegerField(
        min_value=-SMALLINT_MAX - 1, max_value=SMALLINT_MAX, required=False
    )
    attempts = forms.IntegerField(min_value=0, max_value=SMALLINT_MAX, required=False)
    max_attempts = forms.IntegerField(min_value=1, max_value=SMALLINT_MAX, required=False)

    def clean_run_at(self):
        run_at = self.cleaned_data.get("run_at")
        if run_at and run_at > timezone.now() + RUN_AT_FUTURE_LIMIT:
            raise forms.ValidationError("Run at is more than ten years away; is that a typo?")
        if run_at and run_at < timezone.now() - RUN_AT_PAST_TOLERANCE:
            raise forms.ValidationError(
                "Run at is in the past; use “Run now” to run the jobs at once."
            )
        return run_at

    def clean(self):
        data = super().clean()
        if not self.errors and all(data.get(name) is None for name in self.fields):
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
