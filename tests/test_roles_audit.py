"""Roles as groups with permissions, READ_ONLY at the server, and the append-only audit log."""

import pytest
from django.contrib.auth.models import Group

from worker_admin.audit import AppendOnlyError, AuditEntry
from worker_admin.roles import (
    ADMIN,
    OPERATOR,
    VIEWER,
    can_act_on_jobs,
    can_run_maintenance,
    role_of,
)


@pytest.fixture
def member(django_user_model):
    def make(role: str):
        user = django_user_model.objects.create_user(f"{role}-user", password="pw-123456789")
        user.groups.add(Group.objects.get(name=role))
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make


def test_roles__groups_carry_their_permissions(db, member):
    viewer, operator, admin = member(VIEWER), member(OPERATOR), member(ADMIN)
    assert [can_act_on_jobs(u) for u in (viewer, operator, admin)] == [False, True, True]
    assert [can_run_maintenance(u) for u in (viewer, operator, admin)] == [False, False, True]
    assert [role_of(u) for u in (viewer, operator, admin)] == [VIEWER, OPERATOR, ADMIN]
    assert viewer.has_perm("worker_admin.view_auditentry")
    assert admin.has_perm("auth.change_user") and not operator.has_perm("auth.change_user")


def test_roles__read_only_turns_every_write_off(db, member, settings):
    settings.READ_ONLY = True
    admin = member(ADMIN)
    assert not can_act_on_jobs(admin) and not can_run_maintenance(admin)


def _entry(**overrides) -> AuditEntry:
    values = {
        "actor_name": "oncall",
        "via": AuditEntry.Via.WEB,
        "action": "complete",
        "worker_schema": "graphile_worker",
        "requested_ids": [1, 2, 3],
        "changed_ids": [1, 2],
        "skipped_ids": [3],
        "outcome": AuditEntry.Outcome.DONE,
        "summary": "changed 2 of 3; 1 skipped because a worker holds it",
    }
    return AuditEntry.objects.create(**(values | overrides))


def test_audit__append_only(db):
    entry = _entry()
    entry.summary = "rewritten history"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(summary="x")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).summary.startswith("changed 2 of 3")


def test_audit__entries_for_a_job(db):
    first = _entry(requested_ids=[7, 8], changed_ids=[7])
    _entry(requested_ids=[9], changed_ids=[9])
    assert list(AuditEntry.objects.for_job(8)) == [first]
    assert list(AuditEntry.objects.for_job(7)) == [first]
