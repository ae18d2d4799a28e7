from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


class WorkerAdminConfig(AppConfig):
    name = "worker_admin"
    verbose_name = "Graphile Worker console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from worker_admin import (
            account_audit,
            checks,  # noqa: F401 - registers the system checks
            fast_timestamps,
            replica,  # noqa: F401 - resets the per-request replica choice
        )
        from worker_admin.console_schema import ensure_console_schema

        pre_migrate.connect(ensure_console_schema, dispatch_uid="worker_admin.console_schema")
        account_audit.connect()
        fast_timestamps.connect()  # psycopg's C loader for timestamps in a UTC session
        from worker_admin.history import signals as history_signals

        history_signals.connect()  # snapshots taken by the first request once one is due
        from worker_admin import snapshots

        snapshots.connect()  # a shared snapshot answered stale is renewed after the response
        # The role groups come from a migration; `flush` (transactional tests, in whatever order
        # pytest-xdist runs them) empties them and then sends post_migrate: create them again.
        post_migrate.connect(_ensure_role_groups, sender=self, dispatch_uid="worker_admin.roles")


def _ensure_role_groups(sender, using: str = "default", **kwargs) -> None:
    from worker_admin.roles import ensure_groups

    if using == "default":
        ensure_groups()
