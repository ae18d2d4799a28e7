"""`python3 manage.py console_token issue USER --name NAME | list [--all] | revoke ID`: the
console's API tokens from the command line (docs/api.md). Issue and revoke are audited with the
OS user, like every command-line write."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from worker_admin.api import tokens
from worker_admin.api.tokens import TOKEN_MARK, ApiToken
from worker_admin.audit import AuditEntry
from worker_admin.cli.common import os_user
from worker_admin.roles import role_of

NAME_MAX = ApiToken._meta.get_field("name").max_length


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
        name = name.strip()
        if not name or len(name) > NAME_MAX or "\x00" in name:
            raise CommandError(f"The token name must be 1 to {NAME_MAX} characters of text.")
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(
                f"There is no user {username!r}; create one with `manage.py console_user`."
            ) from None
        if not user.is_active:
            raise CommandError(f"User {username} is inactive: a token of theirs would not work.")
        issued = tokens.issue(user, name=name, created_by=os_user(), via=AuditEntry.Via.CLI)
        self.stdout.write(
            f"Issued token {issued.token.pk} “{name}” to {username} ({role_of(user)} role).\n"
            "The secret, shown this once (only its digest is kept):\n\n"
            f"    {issued.secret}\n\n"
            "Send it as `Authorization: Bearer <token>`."
        )

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
        if token is None:
            raise CommandError(f"There is no token {token_id}; `console_token list` shows them.")
        if tokens.revoke(token, actor=os_user(), via=AuditEntry.Via.CLI):
            self.stdout.write(f"Revoked token {token_id} ({token}) of {token.user}.")
        else:
            self.stdout.write(f"Token {token_id} was already revoked; nothing changed.")


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "-"
