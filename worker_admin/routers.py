"""Send reads of the worker schema to the worker database alias; console tables stay on default."""

from __future__ import annotations

from worker_admin import databases


def _is_worker_model(model) -> bool:
    return getattr(model, "_graphile_worker_table", False)


class WorkerSchemaRouter:
    def db_for_read(self, model, **hints):
        return databases.current().alias if _is_worker_model(model) else "default"

    def db_for_write(self, model, **hints):
        return databases.current().alias if _is_worker_model(model) else "default"

    def allow_relation(self, obj1, obj2, **hints):
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        # Django never creates anything on the worker alias: that schema is Graphile Worker's.
        return db == "default"
