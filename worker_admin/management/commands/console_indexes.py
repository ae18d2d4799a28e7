"""`manage.py console_indexes list|preview NAME|create NAME|drop NAME`: the opt-in indexes.

The console never changes the worker schema on its own; these indexes are an operator's choice
(see worker_admin/indexes.py for what each one helps and costs). `preview` prints the SQL, the
estimated size and the write cost and changes nothing; `create` and `drop` run CONCURRENTLY, so
the workers keep writing, and are recorded in the audit log with the OS user.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from worker_admin import audit, indexes
from worker_admin.cli.common import os_user


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:,.1f} {unit}"
    return f"{n} B"


class Command(BaseCommand):
    help = "List, preview, create or drop the console's opt-in indexes on the jobs table."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["list", "preview", "create", "drop"])
        parser.add_argument("name", nargs="?", help="An index name from `list`.")
        parser.add_argument("--reason", default="", help="Why, for the audit log.")

    def handle(self, *args, action: str, name: str | None, reason: str, **options) -> None:
        alias, schema = settings.WORKER_DATABASE, settings.GRAPHILE_WORKER_SCHEMA
        if action == "list":
            self._list(alias, schema)
            return
        if not name:
            raise CommandError(f"Name the index to {action}; `console_indexes list` shows them.")
        try:
            index = indexes.get(name)
        except indexes.UnknownIndex as exc:
            raise CommandError(str(exc)) from None
        if action == "preview":
            self._preview(alias, schema, index.name)
            return
        run = indexes.create if action == "create" else indexes.drop
        sql = index.create_sql(schema) if action == "create" else index.drop_sql(schema)
        self.stdout.write(sql)
        try:
            run(alias, schema, index.name)
        except DatabaseError as exc:
            self._audit(action, index.name, reason, sql, audit.AuditEntry.Outcome.FAILED, str(exc))
            raise CommandError(f"{action} {index.name} failed: {str(exc).strip()}") from None
        self._audit(action, index.name, reason, sql, audit.AuditEntry.Outcome.DONE)
        done = "Created" if action == "create" else "Dropped"
        self.stdout.write(f"{done} {index.name}.")

    def _list(self, alias: str, schema: str) -> None:
        for item in indexes.status(alias, schema):
            state = "absent"
            if item.present:
                state = f"present, {_size(item.size_bytes)}" if item.valid else "INVALID"
            self.stdout.write(f"{item.index.name:<22} {state:<20} helps {item.index.helps}")

    def _preview(self, alias: str, schema: str, name: str) -> None:
        shown = indexes.preview(alias, schema, name)
        self.stdout.write(shown.sql + ";")
        self.stdout.write(
            f"rows: ~{shown.rows:,} (planner's estimate); size: ~{_size(shown.estimated_bytes)}"
        )
        self.stdout.write(f"helps: {shown.index.helps}")
        self.stdout.write(f"write cost: {shown.index.write_cost}")
        self.stdout.write("Nothing was changed. Run `console_indexes create NAME` to build it.")

    def _audit(self, action, name, reason, sql, outcome, error: str = "") -> None:
        audit.record(
            actor=os_user(),
            via=audit.AuditEntry.Via.CLI,
            action=f"index_{action}",
            outcome=outcome,
            worker_schema=settings.GRAPHILE_WORKER_SCHEMA,
            reason=reason,
            parameters={"index": name, "sql": sql},
            summary=f"{action} index {name}",
            error=error,
        )
