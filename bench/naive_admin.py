"""What a team would build first: Django's admin over the same unmanaged worker models.

The benchmark's "naive" column. A plain ModelAdmin with the defaults a first version has:
list_filter on the state-like columns, search_fields, the default paginator (an exact COUNT of
the filtered rows, then OFFSET for page N) and the list ordered newest first. It is mounted at
/naive-admin/ by this module's urlpatterns (the console's own URLs follow), only in the
benchmark process: the console never registers the worker tables in an admin site.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from worker_admin.models import Job, JobQueue, Task, Worker

site = admin.AdminSite(name="naive_admin")


@admin.register(Job, site=site)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "job_queue", "priority", "run_at", "attempts", "locked_at")
    # State-like columns: available or not, attempts (failed = attempts at max), task, queue.
    list_filter = ("is_available", "attempts", "task", "job_queue")
    search_fields = ("=id", "key", "last_error")
    ordering = ("-id",)
    list_per_page = 50


@admin.register(Worker, site=site)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("id", "last_heartbeat_at")


site.register(Task)
site.register(JobQueue)

urlpatterns = [
    path("naive-admin/", site.urls),
    path("", include("dashboard.urls")),
]
