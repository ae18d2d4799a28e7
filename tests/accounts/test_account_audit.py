"""Every change to an account is in the audit log with who, how and before -> after, whatever
made it: the command line (console_user, console_token, createsuperuser, changepassword), a
shell, the group side of a membership; never a password hash; on the audit page and in the API;
and no change without its entry (worker_admin/account_audit.py)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import DatabaseError
from django.test import Client

from tests.accounts.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    accounts,
    change_form,
    post,
    signed_in,
    writes,
)
from tests.test_api import Api
from worker_admin.account_audit import os_user
from worker_admin.api import tokens
from worker_admin.api.tokens import ApiToken
from worker_admin.audit import AuditEntry
from worker_admin.roles import ensure_groups


def test_account_audit__never_stores_a_password_hash(root, alice, oncall, token):
    client = signed_in(root)
    for kind in ("user_add", "user_password", "own_password"):
        url, data = writes(alice, oncall, token)[kind]
        assert post(client, url, data).status_code == 302
    hashes = list(get_user_model().objects.values_list("password", flat=True))
    logged = json.dumps(list(AuditEntry.objects.values()), default=str)
    assert all(stored and stored not in logged for stored in hashes)
    assert NEW_PASSWORD not in logged and PASSWORD not in logged


def test_account_audit__deleting_a_user_records_their_tokens_too(alice):
    """The admin site refuses it (tokens are revoked, never deleted there), a shell may not."""
    issued = tokens.issue(alice, name="deploy bot", via="cli").token
    alice.delete()
    found = [
        (e.action, e.via, e.parameters["before"].get("name") or e.parameters["before"]["username"])
        for e in AuditEntry.objects.filter(action__startswith="delete_").order_by("id")
    ]
    assert found == [("delete_api_token", "cli", "deploy bot"), ("delete_user", "cli", "alice")]
    token_entry = AuditEntry.objects.get(action="delete_api_token")
    assert token_entry.parameters["token_id"] == issued.pk
    assert token_entry.parameters["user"] == "alice"


def test_account_audit__shown_on_the_audit_page_and_in_the_api(root, alice, django_user_model):
    url = f"/django-admin/auth/user/{alice.pk}/change/"
    assert post(signed_in(root), url, change_form(alice, is_staff="on")).status_code == 302
    page = signed_in(root).get("/audit/", {"action": "change_user"}).content.decode()
    assert "changed user alice: is_staff False -&gt; True" in page and "admin site" in page
    secret = tokens.issue(root, name="reader", via="cli").secret
    found = Api(Client(), secret).get("/api/audit", via="admin", action="change_user").json()
    (entry,) = found["entries"] if isinstance(found, dict) else found
    assert entry["actor_name"] == "root" and entry["parameters"]["after"] == {"is_staff": True}


def test_account_audit__memberships_changed_from_the_group_side(alice, oncall, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    last = AuditEntry.objects.latest("id").pk
    oncall.user_set.add(alice, bob)
    oncall.user_set.clear()
    act_on_jobs = Permission.objects.get(codename="act_on_jobs")
    act_on_jobs.user_set.add(bob)
    found = [
        (e.parameters["user"], e.parameters["before"], e.parameters["after"], e.action)
        for e in AuditEntry.objects.filter(pk__gt=last).order_by("id")
    ]
    assert found == [
        ("alice", ["operator"], ["oncall", "operator"], "change_user_groups"),
        ("bob", [], ["oncall"], "change_user_groups"),
        ("alice", ["oncall", "operator"], ["operator"], "change_user_groups"),
        ("bob", ["oncall"], [], "change_user_groups"),
        ("bob", [], ["worker_admin.act_on_jobs"], "change_user_permissions"),
    ]


# -- the command line ---------------------------------------------------------------------------


def test_console_user__each_change_is_audited_as_the_os_user(django_user_model):
    call_command("console_user", "dana", "--role", "operator", stdout=StringIO())
    call_command("console_user", "dana", "--role", "admin", stdout=StringIO())
    found = [
        (e.action, e.via, e.actor_name, e.parameters["before"], e.parameters["after"])
        for e in AuditEntry.objects.filter(parameters__user="dana").order_by("id")
    ]
    me = os_user()
    assert [row[:3] for row in found] == [
        ("create_user", "cli", me),
        ("change_user_groups", "cli", me),
        ("change_user", "cli", me),
        ("change_user_groups", "cli", me),
        ("change_user_groups", "cli", me),
    ]
    assert found[0][4]["password"] == "(set)" and found[0][4]["is_staff"] is False
    assert found[1][3:] == ([], ["operator"])
    assert found[2][3:] == ({"is_staff": False}, {"is_staff": True})
    # A new role is the old one taken away, then the new one given: two entries.
    assert found[3][3:] == (["operator"], [])
    assert found[4][3:] == ([], ["admin"])


def test_account_commands__not_bound_by_read_only_and_still_audited(settings, alice):
    """READ_ONLY binds the server; whoever runs manage.py holds the database credentials."""
    # The role groups may be missing after another test's flush (whatever order pytest-xdist
    # runs files in); console_user would create them, audited. Create them first, so only the
    # commands' own changes are counted.
    ensure_groups()
    before = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    settings.READ_ONLY = True
    call_command("console_user", "erin", "--role", "viewer", stdout=StringIO())
    call_command("console_token", "issue", "alice", "--name", "ci", stdout=StringIO())
    made = AuditEntry.objects.filter(via="cli", pk__gt=before)
    assert set(made.values_list("action", flat=True)) == {
        "create_user",
        "change_user_groups",
        "issue_api_token",
    }


def test_console_user__refuses_to_give_a_superuser_a_lesser_role(root):
    before, entries = accounts(), AuditEntry.objects.count()
    with pytest.raises(CommandError, match="root is a superuser, who has every permission"):
        call_command("console_user", "root", "--role", "viewer", stdout=StringIO())
    assert accounts() == before and AuditEntry.objects.count() == entries


def test_createsuperuser__is_audited(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", NEW_PASSWORD)
    call_command(
        "createsuperuser",
        "--noinput",
        "--username",
        "boss",
        "--email",
        "b@x.org",
        stdout=StringIO(),
    )
    entry = AuditEntry.objects.get(action="create_user")
    assert (entry.via, entry.actor_name, entry.parameters["user"]) == ("cli", os_user(), "boss")
    assert entry.parameters["after"] | {"username": "boss"} == entry.parameters["after"]
    assert (entry.parameters["after"]["is_superuser"], entry.parameters["after"]["password"]) == (
        True,
        "(set)",
    )


def test_changepassword__is_audited(alice, monkeypatch):
    # The terminal, not the database: changepassword reads the new password twice.
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", "alice", stdout=StringIO())
    entry = AuditEntry.objects.get(action="change_user")
    assert (entry.via, entry.parameters["before"], entry.parameters["after"]) == (
        "cli",
        {"password": "(hidden)"},
        {"password": "(changed)"},
    )


def test_console_token__issue_and_revoke_are_audited_with_before_and_after(alice):
    call_command("console_token", "issue", "alice", "--name", "ci", stdout=StringIO())
    issued = ApiToken.objects.get(name="ci")
    call_command("console_token", "revoke", str(issued.pk), stdout=StringIO())
    entries = list(AuditEntry.objects.filter(parameters__token_id=issued.pk).order_by("id"))
    assert [(e.action, e.via, e.actor_name) for e in entries] == [
        ("issue_api_token", "cli", os_user()),
        ("revoke_api_token", "cli", os_user()),
    ]
    assert entries[0].parameters["after"]["name"] == "ci"
    assert entries[1].parameters["before"] == {"revoked_at": None}
    assert entries[1].parameters["after"]["revoked_at"].startswith(str(issued.created_at.year))


# -- one transaction: no change without its entry -----------------------------------------------


def test_account_audit__a_failed_entry_rolls_back_the_command(alice, audit_log_refuses_writes):
    before = accounts()
    with pytest.raises(DatabaseError, match="audit log unavailable"):
        call_command("console_user", "erin", "--role", "admin", stdout=StringIO())
    with pytest.raises(DatabaseError, match="audit log unavailable"):
        call_command("console_user", "alice", "--role", "admin", stdout=StringIO())
    with pytest.raises(DatabaseError, match="audit log unavailable"):
        tokens.issue(alice, name="ci", via="cli")
    assert accounts() == before
