from django.urls import path

from worker_admin.views import (
    actions,
    add,
    audit,
    catalog,
    crons,
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
    path("workers/", workers.workers, name="workers"),
    path("crons/", crons.cron_list, name="crons"),
    path("maintenance/", maintenance.maintenance, name="maintenance"),
    path("maintenance/add-recovery/", maintenance.add_recovery, name="add_recovery"),
    path("maintenance/sweep/", recovery.sweep, name="sweep"),
    path("maintenance/force-unlock/", recovery.force_unlock, name="force_unlock"),
    path("maintenance/cleanup/", recovery.cleanup, name="cleanup"),
    path("audit/", audit.audit_log, name="audit"),
    path("history/", history.history, name="history"),
    path("history/charts/", history.history_charts, name="history_charts"),
    path("audit/<int:entry_id>/undo/", undo.undo_entry, name="undo"),
]
