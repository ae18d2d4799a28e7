"""`python3 manage.py console_token issue USER --name NAME | list [--all] | revoke ID`: the
console's API tokens from the command line (docs/api.md). Issue and revoke go through
worker_admin/operations/tokens.py (previewed and applied at once), audited as the OS user with
before -> after, in the change's transaction."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from worker_admin.api.tokens import TOKEN_MARK, ApiToken
from worker_admin.audit import AuditEntry
from worker_admin.cli.common import os_user
from worker_admin.operations import tokens as token_operation
from worker_admin.operations.errors import Refused
from worker_admin.roles import role_of


class Command(BaseCommand):
    help = "Issue, list and revoke API tokens."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="command", required=True)
        issue = sub.add_parser("issue", help="Issue a token to a user; prints it once.")
        issue.add_argument("username")
        issue.add_argument("--name", required=True, help="What the token is for.")
        listing = sub.add_parser("list", help="List tokens (active ones unless --all).")
        listing.add_argument("--all", action="store_true", help="Include revoked tokens.")
        listing.add_argument("--user", help="Only this user's tokens.")
        revoke = sub.add_parser("revoke", help="Revoke a token by its id (see list).")
        revoke.add_argument("token_id", type=int)

    def handle(self, *args, command: str, **options) -> None:
        getattr(self, f"_{command}")(**options)

    def _issue(self, *, username: str, name: str, **options) -> None:
        what = token_operation.IssueToken(username, name)
        result = self._apply(what)
        self.stdout.write(
            f"Issued token {result.token_id} “{name.strip()}” to {username} "
            f"({role_of(get_user_model().objects.get(username=username))} role).\n"
            "The secret, shown this once (only its digest is kept):\n\n"
            f"    {result.secret}\n\n"
            "Send it as `Authorization: Bearer <token>`."
        )

    def _apply(self, what) -> token_operation.Result:
        """Preview and apply at once (the shell has no confirmation step), as the OS user."""
        actor = os_user()
        try:
            shown = token_operation.preview(actor, what)
            return token_operation.apply(actor, shown.token, via=AuditEntry.Via.CLI)
        except Refused as exc:
            raise CommandError(str(exc)) from None

    def _list(self, *, all: bool, user: str | None, **options) -> None:
        found = ApiToken.objects.select_related("user", "created_by").order_by("id")
        if not all:
            found = found.active()
        if user:
            found = found.filter(user__username=user)
        rows = [("id", "token", "name", "user", "created", "last used", "revoked")]
        for token in found:
            rows.append(
                (
                    str(token.pk),
                    f"{TOKEN_MARK}{token.prefix}…",
                    token.name,
                    token.user.get_username(),
                    _when(token.created_at),
                    _when(token.last_used_at),
                    _when(token.revoked_at),
                )
            )
        if len(rows) == 1:
            self.stdout.write("No tokens." if all else "No active tokens (--all lists revoked).")
            return
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )

    def _revoke(self, *, token_id: int, **options) -> None:
        token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
        if token is not None and token.revoked_at is not None:
            self.stdout.write(f"Token {token_id} was already revoked; nothing changed.")
            return
        self._apply(token_operation.RevokeToken(token_id))
        self.stdout.write(f"Revoked token {token_id} ({token}) of {token.user}.")


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "-"
