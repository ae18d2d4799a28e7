"""The admin site (/django-admin/): READ_ONLY closes it to writes, each change made there is
audited with before -> after in the change's own transaction, and only a superuser grants
superuser, staff or permissions (worker_admin/admin.py, worker_admin/admin_site.py)."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.test import Client, RequestFactory

from tests.accounts.helpers import (
    KINDS,
    NEW_PASSWORD,
    PASSWORD,
    accounts,
    change_form,
    post,
    signed_in,
    writes,
)
from worker_admin.admin_site import READ_ONLY_SENTENCE
from worker_admin.audit import AuditEntry

# -- READ_ONLY: the admin site is closed to writes ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_admin_site__read_only_refuses_every_write_and_writes_nothing(
    settings, root, alice, oncall, token, kind
):
    settings.READ_ONLY = True
    client = signed_in(root)
    url, data = writes(alice, oncall, token)[kind]
    before, entries = accounts(), AuditEntry.objects.count()

    response = post(client, url, data)

    assert response.status_code == 403
    assert READ_ONLY_SENTENCE in response.content.decode()
    assert accounts() == before
    assert AuditEntry.objects.count() == entries + 1
    rejected = AuditEntry.objects.latest("id")
    assert (rejected.outcome, rejected.via, rejected.actor_name) == ("rejected", "admin", "root")
    assert rejected.parameters == {"path": url}


def test_admin_site__read_only_every_registered_model_is_view_only(settings, root):
    request = RequestFactory().get("/django-admin/")
    request.user = root
    registered = admin.site._registry.values()
    assert any(model_admin.has_add_permission(request) for model_admin in registered)
    settings.READ_ONLY = True
    for model_admin in registered:
        name = type(model_admin).__name__
        assert not model_admin.has_add_permission(request), name
        assert not model_admin.has_change_permission(request), name
        assert not model_admin.has_delete_permission(request), name
        assert model_admin.get_actions(request) == {}, name
        assert model_admin.has_view_permission(request), name


def test_admin_site__read_only_still_signs_in_and_shows_pages(settings, root, alice):
    settings.READ_ONLY = True
    client = Client(enforce_csrf_checks=True)
    page = client.get("/django-admin/login/").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    entries = AuditEntry.objects.count()
    response = client.post(
        "/django-admin/login/",
        {"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
    )
    assert response.status_code == 302
    assert AuditEntry.objects.count() == entries  # last_login is bookkeeping
    page = client.get(f"/django-admin/auth/user/{alice.pk}/change/")
    assert page.status_code == 200
    assert 'name="username"' not in page.content.decode()  # shown, not editable
    logout = post(client, "/django-admin/logout/", {})
    assert logout.status_code == 302 and "_auth_user_id" not in client.session


def test_admin_site__a_user_with_tokens_is_not_deleted_there(root, token):
    """Tokens are revoked, never deleted on the admin site, so neither is their user."""
    before = accounts()
    response = post(
        signed_in(root), f"/django-admin/auth/user/{token.user_id}/delete/", {"post": "yes"}
    )
    assert response.status_code == 403
    assert accounts() == before


# -- every change, audited with before -> after ---------------------------------------------------

# What each write leaves in the log: (action, before, after), before and after as subsets.
EXPECTED = {
    "user_add": [
        ("create_user", {}, {"username": "mallory", "password": "(set)", "is_superuser": False})
    ],
    "user_change": [
        (
            "change_user",
            {"is_staff": False, "is_superuser": False},
            {"is_staff": True, "is_superuser": True},
        ),
        ("change_user_groups", ["operator"], []),
        ("change_user_groups", [], ["admin"]),
    ],
    "user_password": [("change_user", {"password": "(hidden)"}, {"password": "(changed)"})],
    "user_delete": [("delete_user", {"username": "alice", "groups": ["operator"]}, {})],
    "user_delete_action": [("delete_user", {"username": "alice", "groups": ["operator"]}, {})],
    "group_add": [("create_group", {}, {"name": "intruders"})],
    "group_change": [
        ("change_group", {"name": "oncall"}, {"name": "night shift"}),
        ("change_group_permissions", [], ["worker_admin.act_on_jobs"]),
    ],
    "group_delete": [("delete_group", {"name": "oncall", "members": ["alice"]}, {})],
    "token_add": [("issue_api_token", {}, {"name": "sneaky"})],
    "token_revoke": [("revoke_api_token", {"revoked_at": None}, {})],
    "own_password": [("change_user", {"password": "(hidden)"}, {"password": "(changed)"})],
}


def _subset(expected, actual) -> bool:
    if isinstance(expected, dict):
        return all(key in actual and actual[key] == value for key, value in expected.items())
    return expected == actual


@pytest.mark.parametrize("kind", KINDS)
def test_admin_site__each_change_is_audited_with_before_and_after(root, alice, oncall, token, kind):
    if kind == "group_delete":
        alice.groups.add(oncall)
    client = signed_in(root)
    url, data = writes(alice, oncall, token)[kind]
    before, last = accounts(), AuditEntry.objects.latest("id").pk

    response = post(client, url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert accounts() != before
    entries = list(AuditEntry.objects.filter(pk__gt=last).order_by("id"))
    found = [(e.action, e.parameters["before"], e.parameters["after"]) for e in entries]
    assert len(found) == len(EXPECTED[kind]), found
    for (action, old, new), (want_action, want_old, want_new) in zip(
        found, EXPECTED[kind], strict=True
    ):
        assert action == want_action and _subset(want_old, old) and _subset(want_new, new), found
    for entry in entries:
        assert (entry.via, entry.actor_name, entry.outcome) == ("admin", "root", "done")
    if kind == "token_revoke":
        assert entries[0].parameters["after"]["revoked_at"] is not None


# -- granting needs a superuser -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("is_superuser", "on"), ("is_staff", "on"), ("user_permissions", "act_on_jobs")],
)
def test_admin_site__only_a_superuser_grants(adele, alice, field, value):
    if value == "act_on_jobs":
        value = [Permission.objects.get(codename="act_on_jobs").pk]
    before = accounts()
    response = post(
        signed_in(adele),
        f"/django-admin/auth/user/{alice.pk}/change/",
        change_form(alice) | {field: value},
    )
    assert response.status_code == 403
    assert (
        f"Only a superuser may grant {field}; you are signed in as adele with the admin role."
        in response.content.decode()
    )
    assert accounts() == before
    entry = AuditEntry.objects.latest("id")
    assert (entry.outcome, entry.action, entry.actor_name) == ("rejected", "change_user", "adele")


def test_admin_site__only_a_superuser_creates_a_superuser(adele):
    before = accounts()
    response = post(
        signed_in(adele),
        "/django-admin/auth/user/add/",
        {
            "username": "mallory",
            "usable_password": "true",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "is_superuser": "on",
        },
    )
    assert response.status_code == 403
    assert "Only a superuser may grant is_superuser" in response.content.decode()
    assert accounts() == before


@pytest.mark.parametrize("what", ["change", "password", "delete", "delete_selected"])
def test_admin_site__a_console_admin_cannot_touch_a_superuser(adele, root, alice, what):
    if what == "delete_selected":
        url = "/django-admin/auth/user/"
        data = {"action": what, "_selected_action": [alice.pk, root.pk], "post": "yes"}
    else:
        url = f"/django-admin/auth/user/{root.pk}/{what}/"
        data = {
            "change": change_form(root, first_name="Mallory"),
            "password": {
                "usable_password": "true",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
            "delete": {"post": "yes"},
        }[what]
    before = accounts()
    response = post(signed_in(adele), url, data)
    assert response.status_code == 403
    assert "root is a superuser: only a superuser may change" in response.content.decode()
    assert accounts() == before
    assert AuditEntry.objects.latest("id").outcome == "rejected"


def test_admin_site__a_console_admin_manages_roles_audited(adele, alice):
    page = signed_in(adele).get(f"/django-admin/auth/user/{alice.pk}/change/").content.decode()
    assert 'name="username"' in page  # may edit the account…
    for field in ("is_superuser", "is_staff", "user_permissions"):
        assert f'name="{field}"' not in page  # …but sees the grants read-only
    admin_group = Group.objects.get(name="admin")
    response = post(
        signed_in(adele),
        f"/django-admin/auth/user/{alice.pk}/change/",
        change_form(alice, groups=[admin_group.pk], first_name="Alice"),
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.first_name, list(alice.groups.values_list("name", flat=True))) == (
        "Alice",
        ["admin"],
    )
    actions = list(
        AuditEntry.objects.filter(actor_name="adele")
        .order_by("id")
        .values_list("action", "via", "summary")
    )
    assert actions == [
        ("change_user", "admin", "changed user alice: first_name '' -> 'Alice'"),
        ("change_user_groups", "admin", "groups of user alice: ['operator'] -> []"),
        ("change_user_groups", "admin", "groups of user alice: [] -> ['admin']"),
    ]


def test_admin_site__a_superuser_grants_superuser_audited(root, alice):
    response = post(
        signed_in(root),
        f"/django-admin/auth/user/{alice.pk}/change/",
        change_form(alice, is_superuser="on", is_staff="on"),
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="change_user")
    assert entry.summary == (
        "changed user alice: is_staff False -> True; is_superuser False -> True"
    )


# -- one transaction: no change without its entry -----------------------------------------------


@pytest.mark.parametrize("kind", ["user_change", "user_password", "token_revoke", "group_add"])
def test_account_audit__a_failed_entry_rolls_back_the_admin_change(
    root, alice, oncall, token, request, kind
):
    """Django's password form and list actions have no transaction of their own: the admin
    site's middleware gives every admin write one."""
    client = signed_in(root)
    url, data = writes(alice, oncall, token)[kind]
    before = accounts()
    request.getfixturevalue("audit_log_refuses_writes")
    response = post(client, url, data)
    assert response.status_code == 500
    page = response.content.decode()
    assert "The database refused this request" in page and "Nothing was changed." in page
    assert accounts() == before
