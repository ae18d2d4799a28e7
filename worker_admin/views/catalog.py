"""Queues and tasks pages (being built)."""

from django.shortcuts import render


def queue_list(request):
    return render(request, "worker_admin/coming.html", {"title": "Queues", "active": "queues"})


def task_list(request):
    return render(request, "worker_admin/coming.html", {"title": "Tasks", "active": "tasks"})
