from django.urls import path, register_converter

from worker_admin.views import (
    actions,
    add,
    audit,
    audit_entry,
    catalog,
    crons,
    entities,
    failures,
    history,
    jobs,
    maintenance,
    overview,
    recovery,
    reveal,
    undo,
    workers,
)

app_name = "worker_admin"


class AnyText:
    """A lock holder's id, a task identifier or a queue name: any text, slashes and line breaks
    included (`path` stops at a line break, so an id holding one could not be linked)."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyText, "anytext")

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("jobs/", jobs.job_list, name="jobs"),
    path("jobs/add/", add.add_job, name="add_job"),
    path("jobs/add/batch/", add.add_batch, name="add_batch"),
    path("jobs/<int:job_id>/", jobs.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/reveal/", reveal.reveal_payload, name="reveal_payload"),
    path("jobs/actions/", actions.job_action, name="job_action"),
    path("jobs/actions/continue/", actions.continue_action, name="continue_action"),
    path("failures/", failures.failure_groups, name="failures"),
    path("queues/", catalog.queue_list, name="queues"),
    path("tasks/", catalog.task_list, name="tasks"),
    # Task identifiers and queue names are any text too (slashes included).
    path("queues/<anytext:name>/", entities.queue_page, name="queue"),
    path("tasks/<anytext:identifier>/", entities.task_page, name="task"),
    path("workers/", workers.workers, name="workers"),
    # A lock holder's id is any text (it comes URL-encoded).
    path("workers/<anytext:worker_id>/", workers.worker, name="worker"),
    path("crons/", crons.cron_list, name="crons"),
    path("maintenance/", maintenance.maintenance, name="maintenance"),
    path("maintenance/add-recovery/", maintenance.add_recovery, name="add_recovery"),
    path("maintenance/index/", maintenance.index_change, name="index_change"),
    path("maintenance/sweep/", recovery.sweep, name="sweep"),
    path(
        "maintenance/sweep/replacements/",
        recovery.sweep_replacements,
        name="sweep_replacements",
    ),
    path("maintenance/force-unlock/", recovery.force_unlock, name="force_unlock"),
    path("maintenance/cleanup/", recovery.cleanup, name="cleanup"),
    path("audit/", audit.audit_log, name="audit"),
    path("audit/<int:entry_id>/", audit_entry.audit_entry, name="audit_entry"),
    path("history/", history.history, name="history"),
    path("history/charts/", history.history_charts, name="history_charts"),
    path("audit/<int:entry_id>/undo/", undo.undo_entry, name="undo"),
]
