"""`python3 manage.py console_user NAME --role viewer|operator|admin`: create a console login
or change its role, through worker_admin/operations/users.py (previewed and applied at once:
the shell has no confirmation step), audited as the OS user with before -> after. Prints a
generated password for a new user unless --password is given."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from worker_admin.account_audit import os_user
from worker_admin.audit import AuditEntry
from worker_admin.operations import users
from worker_admin.operations.errors import Refused
from worker_admin.roles import ADMIN, OPERATOR, VIEWER


class Command(BaseCommand):
    help = "Create a console user or set its role (viewer, operator, admin)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=[VIEWER, OPERATOR, ADMIN], required=True)
        parser.add_argument("--password", help="Set this password (default: keep, or generate).")

    def handle(self, *args, username: str, role: str, password: str | None, **options) -> None:
        actor = os_user()
        change = users.UserChange(username, role=role, set_password=bool(password))
        try:
            shown = users.preview(actor, change)
            result = users.apply(actor, shown.token, via=AuditEntry.Via.CLI, password=password)
        except Refused as exc:
            raise CommandError(str(exc)) from None
        verb = "Created" if result.created else "Updated"
        shown_password = f" with password {result.password}" if result.password else ""
        self.stdout.write(f"{verb} {username} as {result.role}{shown_password}.")
