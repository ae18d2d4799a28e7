"""worker_admin/user_permissions.prime: one query gives exactly the set Django's ModelBackend
computes with two, and a change of role counts on the very next request."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from worker_admin import roles
from worker_admin.user_permissions import prime

pytestmark = pytest.mark.django_db


def _fresh(user):
    return get_user_model().objects.get(pk=user.pk)


def _user_with_direct_and_group_permissions():
    roles.ensure_groups()
    user = get_user_model().objects.create_user("mixed", password="x-unused-123")
    user.groups.add(Group.objects.get(name=roles.OPERATOR))
    user.user_permissions.add(Permission.objects.get(codename="run_maintenance"))
    extra = Group.objects.create(name="auditors-extra")
    extra.permissions.add(Permission.objects.get(codename="view_user"))
    user.groups.add(extra)
    return user


def test_prime_gives_the_set_model_backend_gives():
    user = _user_with_direct_and_group_permissions()
    expected = ModelBackend().get_all_permissions(_fresh(user))
    primed = _fresh(user)
    prime(primed)
    assert primed._perm_cache == expected
    assert {"worker_admin.run_maintenance", "worker_admin.act_on_jobs", "auth.view_user"} <= (
        primed._perm_cache
    )


def test_the_role_costs_one_query():
    user = _fresh(_user_with_direct_and_group_permissions())
    with CaptureQueriesContext(connection) as queries:
        assert roles.role_of(user) == roles.ADMIN
        assert roles.can_act_on_jobs(user)
        assert user.has_perm("auth.view_user")
    assert len(queries) == 1


@pytest.mark.parametrize("flag", ["is_superuser", "inactive"])
def test_superusers_and_inactive_users_are_left_to_model_backend(flag):
    user = get_user_model().objects.create_user("special", password="x-unused-123")
    if flag == "is_superuser":
        user.is_superuser = True
    else:
        user.is_active = False
    user.save()
    user = _fresh(user)
    prime(user)
    assert not hasattr(user, "_perm_cache")
    assert roles.role_of(user) == (roles.ADMIN if flag == "is_superuser" else roles.VIEWER)


def test_a_role_taken_away_counts_on_the_next_request(client):
    roles.ensure_groups()
    user = get_user_model().objects.create_user("demoted", password="x-unused-123")
    user.groups.add(Group.objects.get(name=roles.OPERATOR))
    assert roles.role_of(_fresh(user)) == roles.OPERATOR
    user.groups.clear()
    user.groups.add(Group.objects.get(name=roles.VIEWER))
    assert roles.role_of(_fresh(user)) == roles.VIEWER
