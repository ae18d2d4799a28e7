"""Users, roles, superuser flags and API tokens through worker_admin/operations/ (issue 14,
points 1, 3, 4 for accounts): previewed before -> after, applied once however many requests
send one confirmation, audited with before and after in the change's transaction; granting
superuser needs a superuser; READ_ONLY refuses every signed-in actor, the admin site included."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command

from tests.accounts.helpers import PASSWORD, accounts, post, signed_in
from tests.test_operations_guarantees import THREADS, _all_at_once
from worker_admin.account_audit import os_user
from worker_admin.admin_site import READ_ONLY_SENTENCE
from worker_admin.api.tokens import ApiToken
from worker_admin.audit import AuditEntry
from worker_admin.operations import tokens as token_operation
from worker_admin.operations import users
from worker_admin.operations.errors import AlreadyUsed, Refused, Stale
from worker_admin.operations.permissions import Forbidden
from worker_admin.roles import ensure_groups


@pytest.fixture
def people(transactional_db, account_audit_on, django_user_model):
    """A superuser, a console admin who is not one, and an operator (committed: threads)."""
    ensure_groups()
    root = django_user_model.objects.create_superuser("root", password=PASSWORD)
    adele = django_user_model.objects.create_user("adele", password=PASSWORD, is_staff=True)
    adele.groups.add(Group.objects.get(name="admin"))
    alice = django_user_model.objects.create_user("alice", password=PASSWORD)
    alice.groups.add(Group.objects.get(name="operator"))
    return root, adele, alice


def _apply_all(apply) -> tuple[list, list]:
    """`apply()` from THREADS threads at once: (results, refusals)."""

    def send():
        try:
            return ("done", apply())
        except Refused as exc:  # _all_at_once raises what is returned as an exception
            return ("refused", exc)

    replies = _all_at_once(send)
    return [r for k, r in replies if k == "done"], [r for k, r in replies if k == "refused"]


# -- users and roles -----------------------------------------------------------------------------


def test_user_preview__shows_before_and_after_and_changes_nothing(people):
    _root, adele, alice = people
    last = AuditEntry.objects.latest("id").pk
    shown = users.preview(adele, users.UserChange("alice", role="admin"))
    assert shown.before["role"] == "operator" and shown.after["role"] == "admin"
    assert (shown.before["is_staff"], shown.after["is_staff"]) == (False, True)
    assert "role 'operator' -> 'admin'" in shown.summary
    alice.refresh_from_db()
    assert not alice.is_staff and not AuditEntry.objects.filter(pk__gt=last).exists()


def test_user_apply__one_confirmation_applied_by_many_threads_acts_once(people):
    _root, adele, _alice = people
    shown = users.preview(adele, users.UserChange("bob", role="operator"))
    last = AuditEntry.objects.latest("id").pk

    done, refused = _apply_all(lambda: users.apply(adele, shown.token, via="web"))

    assert len(done) == 1 and len(refused) == THREADS - 1
    assert all(isinstance(r, AlreadyUsed) for r in refused)
    made = list(AuditEntry.objects.filter(pk__gt=last).order_by("id"))
    assert [e.action for e in made] == ["create_user", "change_user_groups"]
    assert all(r.entry is not None and r.entry.pk == made[0].pk for r in refused)
    assert made[0].parameters["after"]["password"] == "(set)"
    assert made[1].parameters["before"] == [] and made[1].parameters["after"] == ["operator"]
    assert all((e.actor_name, e.via) == ("adele", "web") for e in made)


def test_user_apply__an_account_changed_since_the_preview_is_left_alone(people):
    _root, adele, alice = people
    shown = users.preview(adele, users.UserChange("alice", role="viewer"))
    alice.groups.set([Group.objects.get(name="admin")])  # someone else, in between
    before = accounts()
    with pytest.raises(Stale, match="changed since the preview"):
        users.apply(adele, shown.token, via="web")
    assert accounts() == before


def test_granting_superuser_needs_a_superuser(people):
    root, adele, alice = people
    grant = users.UserChange("alice", superuser=True)
    with pytest.raises(Forbidden, match="needs a superuser; you are signed in as adele"):
        users.preview(adele, grant)
    with pytest.raises(Forbidden, match="needs a superuser; the command line"):
        users.preview(os_user(), grant)
    with pytest.raises(Forbidden, match="only a superuser may change a superuser"):
        users.preview(adele, users.UserChange("root", role="admin", set_password=True))
    last = AuditEntry.objects.latest("id").pk
    result = users.apply(root, users.preview(root, grant).token, via="web")
    alice.refresh_from_db()
    assert alice.is_superuser and alice.is_staff and result.role == "admin"
    entry = AuditEntry.objects.get(pk__gt=last, action="change_user")
    assert entry.parameters["before"]["is_superuser"] is False
    assert entry.parameters["after"]["is_superuser"] is True and entry.actor_name == "root"


def test_managing_users_needs_the_admin_role_and_read_only_refuses_it(people, settings):
    _root, adele, alice = people
    with pytest.raises(Forbidden, match=r"needs the admin role; .* with the operator role"):
        users.preview(alice, users.UserChange("bob", role="viewer"))
    shown = users.preview(adele, users.UserChange("bob", role="viewer"))
    settings.READ_ONLY = True
    with pytest.raises(Forbidden, match="read-only"):
        users.apply(adele, shown.token, via="web")
    assert not type(alice).objects.filter(username="bob").exists()


def test_console_user__creates_and_changes_through_the_operation(people):
    out = StringIO()
    call_command("console_user", "carl", "--role", "operator", stdout=out)
    assert "Created carl as operator with password" in out.getvalue()
    call_command("console_user", "carl", "--role", "admin", stdout=out)
    assert "Updated carl as admin." in out.getvalue()
    carl = type(people[0]).objects.get(username="carl")
    assert carl.is_staff and list(carl.groups.values_list("name", flat=True)) == ["admin"]
    made = AuditEntry.objects.filter(parameters__user="carl", via="cli")
    assert made.filter(action="change_user", parameters__after__is_staff=True).exists()


# -- API tokens ----------------------------------------------------------------------------------


def test_token_issue__previewed_then_issued_once_with_the_secret(people):
    _root, adele, _alice = people
    shown = token_operation.preview(adele, token_operation.IssueToken("alice", "deploy bot"))
    assert "will issue token “deploy bot” to alice (operator role)" in shown.summary
    assert not ApiToken.objects.exists()

    done, refused = _apply_all(lambda: token_operation.apply(adele, shown.token, via="web"))

    assert len(done) == 1 and len(refused) == THREADS - 1
    assert ApiToken.objects.count() == 1 and done[0].secret.startswith("gwc_")
    issued = AuditEntry.objects.get(action="issue_api_token")
    assert issued.parameters["after"]["name"] == "deploy bot" and issued.actor_name == "adele"
    assert all(r.entry is not None and r.entry.pk == issued.pk for r in refused)


def test_token_revoke__many_threads_revoke_once_audited_before_and_after(people):
    _root, adele, _alice = people
    issued = token_operation.apply(
        adele,
        token_operation.preview(adele, token_operation.IssueToken("alice", "ci")).token,
        via="cli",
    )
    shown = token_operation.preview(adele, token_operation.RevokeToken(issued.token_id))
    assert shown.before["revoked_at"] is None and "will revoke token" in shown.summary

    done, refused = _apply_all(lambda: token_operation.apply(adele, shown.token, via="api"))

    assert len(done) == 1 and len(refused) == THREADS - 1
    entry = AuditEntry.objects.get(action="revoke_api_token")
    assert entry.parameters["before"] == {"revoked_at": None}
    assert entry.parameters["after"]["revoked_at"] is not None and entry.via == "api"
    with pytest.raises(Refused, match="already revoked"):
        token_operation.preview(adele, token_operation.RevokeToken(issued.token_id))


def test_tokens_need_the_admin_role(people):
    _root, _adele, alice = people
    with pytest.raises(Forbidden, match="needs the admin role"):
        token_operation.preview(alice, token_operation.IssueToken("alice", "mine"))


# -- READ_ONLY and the admin site: the change forms too --------------------------------------------


@pytest.mark.parametrize("what", ["user", "group", "token"])
def test_admin_site__read_only_refuses_the_change_forms_and_writes_nothing(people, settings, what):
    root, _adele, alice = people
    group = Group.objects.create(name="oncall")
    token = token_operation.apply(
        root, token_operation.preview(root, token_operation.IssueToken("alice", "x")).token
    )
    url, data = {
        "user": (f"/django-admin/auth/user/{alice.pk}/change/", {"username": "mallory"}),
        "group": (f"/django-admin/auth/group/{group.pk}/change/", {"name": "intruders"}),
        "token": (
            f"/django-admin/worker_admin/apitoken/{token.token_id}/change/",
            {"name": "renamed", "user": root.pk},
        ),
    }[what]
    settings.READ_ONLY = True
    before, last = accounts(), AuditEntry.objects.latest("id").pk

    response = post(signed_in(root), url, data)

    assert response.status_code == 403 and READ_ONLY_SENTENCE in response.content.decode()
    assert accounts() == before
    made = list(AuditEntry.objects.filter(pk__gt=last))
    assert [(e.outcome, e.via) for e in made] == [("rejected", "admin")]
