"""Fixtures for the account tests: a superuser, a console admin who is not one, an operator, a
group, a token; the account audit connected for every test here (tests/conftest.py turns it
off elsewhere)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection

from tests.accounts.helpers import PASSWORD
from worker_admin.api import tokens
from worker_admin.audit import AuditEntry


@pytest.fixture(autouse=True)
def _audited(account_audit_on):
    """Every change to an account is audited here, as in production."""


@pytest.fixture
def alice(django_user_model):
    user = django_user_model.objects.create_user("alice", password=PASSWORD)
    user.groups.add(Group.objects.get(name="operator"))
    return user


@pytest.fixture
def oncall(db):
    return Group.objects.create(name="oncall")


@pytest.fixture
def token(django_user_model):
    tobias = django_user_model.objects.create_user("tobias", password=PASSWORD)
    return tokens.issue(tobias, name="deploy bot", via="cli").token


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def adele(django_user_model):
    """A console admin (staff, admin group) who is not a superuser."""
    user = django_user_model.objects.create_user("adele", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="admin"))
    return user


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
