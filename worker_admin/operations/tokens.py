"""API tokens: issue one to a user, or revoke one, previewed and applied once, audited.

    shown = preview(actor, IssueToken("alice", "deploy bot"))   # before -> after, a token
    result = apply(actor, shown.token, via="cli")               # result.secret, shown once

The change and its audit entries (worker_admin/account_audit.py, before -> after) commit in one
transaction, which also holds the confirmation's row lock: a second apply of the same
confirmation waits, then is refused with AlreadyUsed naming the first entry. Managing tokens
needs the admin role (the command line acts as the OS user: operations/permissions.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, transaction

from worker_admin import account_audit
from worker_admin.api import tokens
from worker_admin.api.tokens import TOKEN_MARK, ApiToken
from worker_admin.operations import claims
from worker_admin.operations.errors import NotFound, Refused
from worker_admin.operations.permissions import require_admin
from worker_admin.roles import role_of

KIND = "api_token"
DOING = "managing API tokens"
NAME_MAX = ApiToken._meta.get_field("name").max_length


@dataclass(frozen=True)
class IssueToken:
    username: str
    name: str


@dataclass(frozen=True)
class RevokeToken:
    token_id: int


@dataclass(frozen=True)
class Preview:
    token: str
    summary: str  # "will issue …" / "will revoke …"
    before: dict
    after: dict
    warnings: list[str]


@dataclass(frozen=True)
class Result:
    summary: str
    token_id: int
    secret: str  # issue only: the one time it exists outside the caller's hands
    audit_entry_ids: list[int]


def _user(username: str):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"There is no user {username!r}; create one with `manage.py console_user`.")
    if not user.is_active:
        raise Refused(f"User {username} is inactive: a token of theirs would not work.")
    return user


def _issue_request(what: IssueToken) -> dict:
    name = (what.name or "").strip()
    if not name or len(name) > NAME_MAX or "\x00" in name:
        raise Refused(f"The token name must be 1 to {NAME_MAX} characters of text.")
    user = _user(str(what.username or ""))
    return {"op": "issue", "user_id": user.pk, "username": user.get_username(), "name": name}


def _live(token_id) -> ApiToken:
    token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
    if token is None:
        raise NotFound(f"There is no token {token_id}; `console_token list` shows them.")
    if token.revoked_at is not None:
        raise Refused(f"Token {token_id} was already revoked; nothing to change.", status=409)
    return token


def preview(actor, what: IssueToken | RevokeToken) -> Preview:
    """Read-only: what issuing or revoking will change, stored as a confirmation."""
    require_admin(actor, DOING)
    if isinstance(what, IssueToken):
        request = _issue_request(what)
        user = get_user_model().objects.get(pk=request["user_id"])
        after = {"name": request["name"], "user": request["username"], "role": role_of(user)}
        summary = (
            f"will issue token “{request['name']}” to {request['username']} "
            f"({role_of(user)} role); its secret is shown once"
        )
        warnings = [f"The token acts as {request['username']}, with the {role_of(user)} role."]
        before: dict = {}
    else:
        token = _live(what.token_id)
        request = {"op": "revoke", "token_id": token.pk}
        before = {"name": token.name, "token": f"{TOKEN_MARK}{token.prefix}…", "revoked_at": None}
        after = {"revoked_at": "(now)"}
        summary = f"will revoke token {token.pk} ({token}) of {token.user.get_username()}"
        warnings = ["Scripts using it get 401 from then on."]
    shown = claims.issue(KIND, actor, request, [before], claims.fingerprint(request))
    return Preview(shown, summary, before, after, warnings)


def apply(actor, confirmation: str, *, via: str = "web") -> Result:
    """Issue or revoke, once; the audit entries in the same transaction."""
    require_admin(actor, DOING)  # the role first: a forged token from a viewer is a 403
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        row = claims.claim(confirmation, KIND, actor)
        claims.refuse_if_used(row)
        require_admin(actor, DOING)
        request = row.request
        with account_audit.acting_as(actor, via), account_audit.recorded() as entries:
            if request["op"] == "issue":
                user = get_user_model().objects.select_for_update().get(pk=request["user_id"])
                if not user.is_active:
                    raise Refused(f"User {user} was deactivated since the preview.", status=409)
                issued = tokens.issue(user, name=request["name"], created_by=actor, via=via)
                token, secret = issued.token, issued.secret
                summary = f"issued token {token.pk} “{token.name}” to {user.get_username()}"
            else:
                token = _live(request["token_id"])
                if not tokens.revoke(token, actor=actor, via=via):
                    raise Refused(f"Token {token.pk} was already revoked.", status=409)
                secret, summary = "", f"revoked token {token.pk} ({token})"
        first = entries[0].pk if entries else None
        claims.mark_used(row, {"first_entry": first, "summary": summary})
    return Result(summary, token.pk, secret, [entry.pk for entry in entries])
