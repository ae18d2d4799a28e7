"""`python3 manage.py console_user NAME --role viewer|operator|admin`: create a console login
or change its role. Prints a generated password for a new user unless --password is given."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from worker_admin.account_audit import acting_as, os_user
from worker_admin.audit import AuditEntry
from worker_admin.roles import ADMIN, OPERATOR, ROLE_PERMISSIONS, VIEWER, ensure_groups


class Command(BaseCommand):
    help = "Create a console user or set its role (viewer, operator, admin)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=[VIEWER, OPERATOR, ADMIN], required=True)
        parser.add_argument("--password", help="Set this password (default: keep, or generate).")

    def handle(self, *args, username: str, role: str, password: str | None, **options) -> None:
        if not username.strip() or len(username) > 150:
            raise CommandError("The user name must be 1 to 150 characters.")
        ensure_groups()
        # One transaction with the audit entries (worker_admin/account_audit.py), as the OS user.
        with transaction.atomic(), acting_as(os_user(), AuditEntry.Via.CLI):
            user = get_user_model().objects.filter(username=username).first()
            created = user is None
            if created:
                user = get_user_model()(username=username)
            if user.is_superuser and role != ADMIN:
                raise CommandError(
                    f"{username} is a superuser, who has every permission whatever the role; "
                    "take superuser status away first (a superuser can, on the admin site). "
                    "Nothing was changed."
                )
            if created or password:
                password = password or secrets.token_urlsafe(12)
                user.set_password(password)
            # Admins manage users through Django's admin site, which needs is_staff.
            user.is_staff = role == ADMIN or user.is_superuser
            user.save()
            others = user.groups.exclude(name__in=list(ROLE_PERMISSIONS))
            user.groups.set([*others, Group.objects.get(name=role)])
        verb = "Created" if created else "Updated"
        shown = f" with password {password}" if created or options.get("password") else ""
        self.stdout.write(f"{verb} {username} as {role}{shown}.")
