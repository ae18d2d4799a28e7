"""Failures: failed and retrying jobs grouped by task and normalised error (being built)."""

from django.shortcuts import render


def failure_groups(request):
    return render(request, "worker_admin/coming.html", {"title": "Failures", "active": "failures"})
