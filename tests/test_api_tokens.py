"""API tokens: stored hashed, shown once, revocable; issued and revoked through the management
command and Django's admin site, audited either way."""

from __future__ import annotations

import hashlib
import re
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import connection

from tests.test_api import Api
from worker_admin.api import tokens
from worker_admin.api.tokens import ApiToken
from worker_admin.audit import AuditEntry

SECRET = re.compile(r"gwc_[A-Za-z0-9_-]{40,}")
pytestmark = pytest.mark.usefixtures("account_audit_on")  # issue and revoke are audited there


@pytest.fixture
def alice(django_user_model):
    user = django_user_model.objects.create_user("alice", password="pw-123456789")
    user.groups.add(Group.objects.get(name="operator"))
    return user


def _all_console_text() -> str:
    """Every row of the tokens table as text, every column included."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT t::text FROM {ApiToken._meta.db_table} AS t")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_token__only_a_digest_and_a_prefix_are_stored(alice):
    issued = tokens.issue(alice, name="deploy bot", via="cli")
    stored = _all_console_text()
    assert issued.secret not in stored
    assert issued.secret.removeprefix("gwc_") not in stored
    assert hashlib.sha256(issued.secret.encode()).hexdigest() in stored
    assert issued.token.prefix == issued.secret[4:12]
    assert len(issued.secret) >= 40  # 32 random bytes
    assert tokens.authenticate(issued.secret).user == alice
    assert tokens.authenticate(issued.secret.upper()) is None


def test_token__two_tokens_never_share_a_secret(alice):
    first, second = (tokens.issue(alice, name=n, via="cli") for n in ("a", "b"))
    assert first.secret != second.secret and first.token.digest != second.token.digest


def test_command__issue_prints_the_secret_once_and_audits(client, alice, jobs):
    out = StringIO()
    call_command("console_token", "issue", "alice", "--name", "nightly report", stdout=out)
    (secret,) = SECRET.findall(out.getvalue())
    token = ApiToken.objects.get()
    assert (token.name, token.user, token.created_by) == ("nightly report", alice, None)
    assert Api(client, secret).get("/api/stats").status_code == 200
    entry = AuditEntry.objects.get(action="issue_api_token")
    assert (entry.via, entry.outcome, entry.parameters["user"]) == ("cli", "done", "alice")
    assert secret not in str(entry.parameters) and secret not in entry.summary

    listing = StringIO()
    call_command("console_token", "list", stdout=listing)
    assert "nightly report" in listing.getvalue() and token.prefix in listing.getvalue()
    assert secret not in listing.getvalue()


def test_command__revoke_stops_the_token_and_audits(client, alice, jobs):
    issued = tokens.issue(alice, name="ci", via="cli")
    api = Api(client, issued.secret)
    assert api.get("/api/stats").status_code == 200
    out = StringIO()
    call_command("console_token", "revoke", str(issued.token.pk), stdout=out)
    assert "Revoked" in out.getvalue()
    assert api.get("/api/stats").status_code == 401
    assert AuditEntry.objects.filter(action="revoke_api_token", via="cli").count() == 1
    again = StringIO()
    call_command("console_token", "revoke", str(issued.token.pk), stdout=again)
    assert "already revoked" in again.getvalue()
    assert AuditEntry.objects.filter(action="revoke_api_token").count() == 1
    listing = StringIO()
    call_command("console_token", "list", stdout=listing)
    assert "ci" not in listing.getvalue().split("\n", 1)[-1]
    call_command("console_token", "list", "--all", stdout=listing)
    assert "ci" in listing.getvalue()


def test_command__refuses_unknown_users_and_tokens(alice, django_user_model):
    with pytest.raises(CommandError, match="no user"):
        call_command("console_token", "issue", "bob", "--name", "x")
    with pytest.raises(CommandError, match="no token"):
        call_command("console_token", "revoke", "12345")
    with pytest.raises(CommandError, match="1 to 100"):
        call_command("console_token", "issue", "alice", "--name", " ")
    django_user_model.objects.create_user("gone", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        call_command("console_token", "issue", "gone", "--name", "x")
    assert ApiToken.objects.count() == 0


@pytest.fixture
def admin_site(client, django_user_model):
    admin = django_user_model.objects.create_user("boss", password="pw-123456789", is_staff=True)
    admin.groups.add(Group.objects.get(name="admin"))
    client.force_login(admin)
    return client


def test_admin_site__issue_shows_the_secret_once(admin_site, alice, jobs):
    response = admin_site.post(
        "/django-admin/worker_admin/apitoken/add/",
        {"name": "grafana", "user": alice.pk},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    (secret,) = SECRET.findall(" ".join(shown))
    token = ApiToken.objects.get()
    assert (token.name, token.user, token.created_by.username) == ("grafana", alice, "boss")
    assert token.digest == hashlib.sha256(secret.encode()).hexdigest()
    entry = AuditEntry.objects.get(action="issue_api_token")
    assert (entry.via, entry.actor_name) == ("admin", "boss")

    # Never again: not in the list, not on the token's page, and never the digest.
    for url in (
        "/django-admin/worker_admin/apitoken/",
        f"/django-admin/worker_admin/apitoken/{token.pk}/change/",
    ):
        page = admin_site.get(url).content.decode()
        assert secret not in page and token.digest not in page
        assert token.prefix in page
    assert Api(admin_site, secret).get("/api/stats").status_code == 200


def test_admin_site__revoke_action(admin_site, alice, jobs):
    issued = tokens.issue(alice, name="old", via="cli")
    keep = tokens.issue(alice, name="new", via="cli")
    response = admin_site.post(
        "/django-admin/worker_admin/apitoken/",
        {"action": "revoke_selected", "_selected_action": [issued.token.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 token." in [str(m) for m in response.context["messages"]]
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert ApiToken.objects.get(pk=keep.token.pk).revoked_at is None
    assert Api(admin_site, issued.secret).get("/api/stats").status_code == 401
    entry = AuditEntry.objects.get(action="revoke_api_token")
    assert (entry.via, entry.actor_name, entry.parameters["token_id"]) == (
        "admin",
        "boss",
        issued.token.pk,
    )


def test_admin_site__only_console_admins_manage_tokens(client, django_user_model, alice):
    staff = django_user_model.objects.create_user("staff_op", is_staff=True)
    staff.groups.add(Group.objects.get(name="operator"))
    client.force_login(staff)
    assert client.get("/django-admin/worker_admin/apitoken/").status_code == 403
    response = client.post(
        "/django-admin/worker_admin/apitoken/add/", {"name": "sneaky", "user": staff.pk}
    )
    assert response.status_code == 403
    assert ApiToken.objects.count() == 0
