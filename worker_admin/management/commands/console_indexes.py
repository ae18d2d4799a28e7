"""`manage.py console_indexes list|preview NAME|create NAME|drop NAME`: the opt-in indexes.

The console never changes the worker schema on its own; these indexes are an operator's choice
(see worker_admin/indexes.py for what each one helps and costs). `preview` prints the SQL, the
estimated size and the write cost and changes nothing; `create` and `drop` run CONCURRENTLY, so
the workers keep writing, through worker_admin/operations/indexes.py (audited as the OS user:
a "started" entry, then "done" or "failed").
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from worker_admin import audit, databases, indexes
from worker_admin.cli.common import os_user
from worker_admin.operations import indexes as index_operation
from worker_admin.operations.errors import Refused


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
        parser.add_argument(
            "--database", metavar="NAME", help="Which worker database (default: the main one)."
        )

    def handle(self, *args, database: str | None = None, **options) -> None:
        try:
            with databases.using(database):
                self._handle(**options)
        except databases.UnknownDatabase as exc:
            raise CommandError(str(exc)) from None

    def _handle(self, *, action: str, name: str | None, reason: str, **options) -> None:
        alias, schema = databases.current().alias, settings.GRAPHILE_WORKER_SCHEMA
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
        actor = os_user()
        try:  # previewed and applied at once: the shell has no confirmation step
            shown = index_operation.preview(actor, index.name, action)
            self.stdout.write(shown.sql)
            result = index_operation.apply(
                actor, shown.token, via=audit.AuditEntry.Via.CLI, reason=reason
            )
        except index_operation.NothingToDo as exc:  # as asked already: scripts may run it twice
            self.stdout.write(str(exc))
            return
        except Refused as exc:
            raise CommandError(str(exc)) from None
        if not result.ok:
            raise CommandError(f"{action} {index.name} failed: {result.error}")
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
