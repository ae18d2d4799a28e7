"""Accounts on the admin site and the command line: READ_ONLY closes the admin site to writes,
every change to users, groups, roles, permissions, passwords and API tokens is in the audit log
with who, how and before -> after, in the change's own transaction, and only a superuser grants
superuser, staff or permissions (worker_admin/account_audit.py, admin.py, admin_site.py)."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection
from django.test import Client, RequestFactory

from tests.test_api import Api
from worker_admin.account_audit import os_user
from worker_admin.admin_site import READ_ONLY_SENTENCE
from worker_admin.api import tokens
from worker_admin.api.tokens import ApiToken
from worker_admin.audit import AuditEntry

pytestmark = pytest.mark.usefixtures("account_audit_on")

PASSWORD = "pw-123456789"
NEW_PASSWORD = "a-much-longer-new-secret-42"


@pytest.fixture
def alice(django_user_model):
    user = django_user_model.objects.create_user("alice", password=PASSWORD)
    user.groups.add(Group.objects.get(name="operator"))
    return user


@pytest.fixture
def oncall():
    return Group.objects.create(name="oncall")


@pytest.fixture
def token(django_user_model):
    tobias = django_user_model.objects.create_user("tobias", password=PASSWORD)
    return tokens.issue(tobias, name="deploy bot", via="cli").token


def _signed_in(user) -> Client:
    """A browser session: CSRF enforced, as a real form post is."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def adele(django_user_model):
    """A console admin (staff, admin group) who is not a superuser."""
    user = django_user_model.objects.create_user("adele", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="admin"))
    return user


def _post(client: Client, url: str, data: dict):
    page = client.get("/django-admin/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    return client.post(url, {**data, "csrfmiddlewaretoken": token})


def _change_form(user, **changes) -> dict:
    """What the user change form sends for `user`, with `changes` on top."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "groups": [group.pk for group in user.groups.all()],
    }
    for flag in ("is_active", "is_staff", "is_superuser"):
        if getattr(user, flag):
            data[flag] = "on"
    return {**data, **changes}


def _accounts() -> dict:
    """Every account row the admin site could change, as plain values."""
    from django.contrib.auth import get_user_model

    return {
        "users": sorted(
            get_user_model().objects.values_list(
                "username", "password", "is_active", "is_staff", "is_superuser", "first_name"
            )
        ),
        "memberships": sorted(
            get_user_model().groups.through.objects.values_list("user_id", "group_id")
        ),
        "user_permissions": sorted(
            get_user_model().user_permissions.through.objects.values_list(
                "user_id", "permission_id"
            )
        ),
        "groups": sorted(Group.objects.values_list("name", flat=True)),
        "group_permissions": sorted(
            Group.permissions.through.objects.values_list("group_id", "permission_id")
        ),
        "tokens": sorted(ApiToken.objects.values_list("name", "user_id", "revoked_at")),
    }


# Each kind of write the admin site takes: (url, form data), from the fixtures.
def _writes(alice, oncall, token) -> dict:
    act_on_jobs = Permission.objects.get(codename="act_on_jobs")
    return {
        "user_add": (
            "/django-admin/auth/user/add/",
            {
                "username": "mallory",
                "usable_password": "true",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
        ),
        "user_change": (
            f"/django-admin/auth/user/{alice.pk}/change/",
            _change_form(
                alice,
                is_staff="on",
                is_superuser="on",
                groups=[Group.objects.get(name="admin").pk],
            ),
        ),
        "user_password": (
            f"/django-admin/auth/user/{alice.pk}/password/",
            {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        ),
        "user_delete": (f"/django-admin/auth/user/{alice.pk}/delete/", {"post": "yes"}),
        "user_delete_action": (
            "/django-admin/auth/user/",
            {"action": "delete_selected", "_selected_action": [alice.pk], "post": "yes"},
        ),
        "group_add": ("/django-admin/auth/group/add/", {"name": "intruders"}),
        "group_change": (
            f"/django-admin/auth/group/{oncall.pk}/change/",
            {"name": "night shift", "permissions": [act_on_jobs.pk]},
        ),
        "group_delete": (f"/django-admin/auth/group/{oncall.pk}/delete/", {"post": "yes"}),
        "token_add": (
            "/django-admin/worker_admin/apitoken/add/",
            {"name": "sneaky", "user": alice.pk},
        ),
        "token_revoke": (
            "/django-admin/worker_admin/apitoken/",
            {"action": "revoke_selected", "_selected_action": [token.pk]},
        ),
        "own_password": (
            "/django-admin/password_change/",
            {
                "old_password": PASSWORD,
                "new_password1": NEW_PASSWORD,
                "new_password2": NEW_PASSWORD,
            },
        ),
    }


KINDS = [
    "user_add",
    "user_change",
    "user_password",
    "user_delete",
    "user_delete_action",
    "group_add",
    "group_change",
    "group_delete",
    "token_add",
    "token_revoke",
    "own_password",
]


# -- READ_ONLY: the admin site is closed to writes ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_admin_site__read_only_refuses_every_write_and_writes_nothing(
    settings, root, alice, oncall, token, kind
):
    settings.READ_ONLY = True
    client = _signed_in(root)
    url, data = _writes(alice, oncall, token)[kind]
    before, entries = _accounts(), AuditEntry.objects.count()

    response = _post(client, url, data)

    assert response.status_code == 403
    assert READ_ONLY_SENTENCE in response.content.decode()
    assert _accounts() == before
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
    response = client.post(
        "/django-admin/login/",
        {"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": csrf},
    )
    assert response.status_code == 302
    page = client.get(f"/django-admin/auth/user/{alice.pk}/change/")
    assert page.status_code == 200
    assert 'name="username"' not in page.content.decode()  # shown, not editable


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
    client = _signed_in(root)
    url, data = _writes(alice, oncall, token)[kind]
    before, last = _accounts(), AuditEntry.objects.latest("id").pk

    response = _post(client, url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert _accounts() != before
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


def test_account_audit__never_stores_a_password_hash(root, alice, oncall, token):
    client = _signed_in(root)
    for kind in ("user_add", "user_password", "own_password"):
        url, data = _writes(alice, oncall, token)[kind]
        assert _post(client, url, data).status_code == 302
    from django.contrib.auth import get_user_model

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
    assert _post(_signed_in(root), url, _change_form(alice, is_staff="on")).status_code == 302
    page = _signed_in(root).get("/audit/", {"action": "change_user"}).content.decode()
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


# -- granting needs a superuser -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("is_superuser", "on"), ("is_staff", "on"), ("user_permissions", "act_on_jobs")],
)
def test_admin_site__only_a_superuser_grants(adele, alice, field, value):
    if value == "act_on_jobs":
        value = [Permission.objects.get(codename="act_on_jobs").pk]
    before = _accounts()
    response = _post(
        _signed_in(adele),
        f"/django-admin/auth/user/{alice.pk}/change/",
        _change_form(alice) | {field: value},
    )
    assert response.status_code == 403
    assert (
        f"Only a superuser may grant {field}; you are signed in as adele with the admin role."
        in response.content.decode()
    )
    assert _accounts() == before
    entry = AuditEntry.objects.latest("id")
    assert (entry.outcome, entry.action, entry.actor_name) == ("rejected", "change_user", "adele")


def test_admin_site__only_a_superuser_creates_a_superuser(adele):
    before = _accounts()
    response = _post(
        _signed_in(adele),
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
    assert _accounts() == before


@pytest.mark.parametrize("what", ["change", "password", "delete", "delete_selected"])
def test_admin_site__a_console_admin_cannot_touch_a_superuser(adele, root, alice, what):
    if what == "delete_selected":
        url = "/django-admin/auth/user/"
        data = {"action": what, "_selected_action": [alice.pk, root.pk], "post": "yes"}
    else:
        url = f"/django-admin/auth/user/{root.pk}/{what}/"
        data = {
            "change": _change_form(root, first_name="Mallory"),
            "password": {
                "usable_password": "true",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
            "delete": {"post": "yes"},
        }[what]
    before = _accounts()
    response = _post(_signed_in(adele), url, data)
    assert response.status_code == 403
    assert "root is a superuser: only a superuser may change" in response.content.decode()
    assert _accounts() == before
    assert AuditEntry.objects.latest("id").outcome == "rejected"


def test_admin_site__a_console_admin_manages_roles_audited(adele, alice):
    page = _signed_in(adele).get(f"/django-admin/auth/user/{alice.pk}/change/").content.decode()
    assert 'name="username"' in page  # may edit the account…
    for field in ("is_superuser", "is_staff", "user_permissions"):
        assert f'name="{field}"' not in page  # …but sees the grants read-only
    admin_group = Group.objects.get(name="admin")
    response = _post(
        _signed_in(adele),
        f"/django-admin/auth/user/{alice.pk}/change/",
        _change_form(alice, groups=[admin_group.pk], first_name="Alice"),
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
    response = _post(
        _signed_in(root),
        f"/django-admin/auth/user/{alice.pk}/change/",
        _change_form(alice, is_superuser="on", is_staff="on"),
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="change_user")
    assert entry.summary == (
        "changed user alice: is_staff False -> True; is_superuser False -> True"
    )


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
    settings.READ_ONLY = True
    call_command("console_user", "erin", "--role", "viewer", stdout=StringIO())
    call_command("console_token", "issue", "alice", "--name", "ci", stdout=StringIO())
    assert set(AuditEntry.objects.filter(via="cli").values_list("action", flat=True)) == {
        "create_user",
        "change_user_groups",
        "issue_api_token",
    }


def test_console_user__refuses_to_give_a_superuser_a_lesser_role(root):
    before, entries = _accounts(), AuditEntry.objects.count()
    with pytest.raises(CommandError, match="root is a superuser, who has every permission"):
        call_command("console_user", "root", "--role", "viewer", stdout=StringIO())
    assert _accounts() == before and AuditEntry.objects.count() == entries


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


@pytest.fixture
def audit_log_refuses_writes(db):
    """The audit table refuses every insert, as a full disk or a lost grant would."""
    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION pg_temp.refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER refuse_audit BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_audit()"
        )


@pytest.mark.parametrize("kind", ["user_change", "user_password", "token_revoke", "group_add"])
def test_account_audit__a_failed_entry_rolls_back_the_admin_change(
    root, alice, oncall, token, request, kind
):
    """Django's password form and list actions have no transaction of their own: the admin
    site's middleware gives every admin write one."""
    client = _signed_in(root)
    url, data = _writes(alice, oncall, token)[kind]
    before = _accounts()
    request.getfixturevalue("audit_log_refuses_writes")
    response = _post(client, url, data)
    assert response.status_code == 500
    page = response.content.decode()
    assert "The database refused this request" in page and "Nothing was changed." in page
    assert _accounts() == before


def test_account_audit__a_failed_entry_rolls_back_the_command(alice, audit_log_refuses_writes):
    before = _accounts()
    with pytest.raises(DatabaseError, match="audit log unavailable"):
        call_command("console_user", "erin", "--role", "admin", stdout=StringIO())
    with pytest.raises(DatabaseError, match="audit log unavailable"):
        call_command("console_user", "alice", "--role", "admin", stdout=StringIO())
    with pytest.raises(DatabaseError, match="audit log unavailable"):
        tokens.issue(alice, name="ci", via="cli")
    assert _accounts() == before
