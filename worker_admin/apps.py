from django.apps import AppConfig
from django.db.models.signals import pre_migrate


class WorkerAdminConfig(AppConfig):
    name = "worker_admin"
    verbose_name = "Graphile Worker console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from worker_admin import (
            account_audit,
            checks,  # noqa: F401 - registers the system checks
        )
        from worker_admin.console_schema import ensure_console_schema

        pre_migrate.connect(ensure_console_schema, dispatch_uid="worker_admin.console_schema")
        account_audit.connect()
