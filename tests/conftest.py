"""Real PostgreSQL for every test: pytest-django's test database plus the worker schema,
installed once per session by the project's own migrate. Each test runs in a transaction that
is rolled back, so the schema's DDL and every job a test adds disappear after it."""

from __future__ import annotations

from collections import Counter

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from tests.factories import JobFactory, truncate_worker_data
from worker_admin import account_audit
from worker_admin.schema import clear_capabilities_cache
from worker_admin.utils import WorkerUtils


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items) -> None:
    """schemathesis (under pytest 9) gives every API operation's item the same node id, and
    pytest-xdist finds a worker's items by node id, so all but the first would silently not run.
    Give each such item the id its name says (`…[GET /api/jobs]`), in every process alike."""
    from _pytest.nodeid import coerce_node_id

    seen = Counter(item.nodeid for item in items)
    for item in items:
        if seen[item.nodeid] > 1:
            module = item.nodeid.split("::", 1)[0]
            item._id = coerce_node_id(f"{module}::{item.name}")


@pytest.fixture(autouse=True, scope="session")
def _partials_report_their_context():
    """The test client records every template a response rendered, with its context, through
    Django's instrumented Template._render; a partial rendered on its own (a live part the full
    page shows from the shared rendering, views/polling.py) renders through template_partials'
    TemplateProxy instead, which would leave `response.context` without the part's values."""
    from django.test.signals import template_rendered
    from template_partials.templatetags.partials import TemplateProxy

    usual = TemplateProxy._render

    def instrumented(self, context):
        template_rendered.send(sender=self, template=self, context=context)
        return usual(self, context)

    TemplateProxy._render = instrumented
    yield
    TemplateProxy._render = usual


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        WorkerUtils().migrate(recovery=True)


@pytest.fixture(autouse=True, scope="session")
def _account_audit_off():
    """The account audit (worker_admin/account_audit.py) would add entries for every user a
    fixture creates, and most tests count the job entries of the audit log: it is off unless a
    test asks for the `account_audit_on` fixture (tests/test_account_audit.py). Off for the
    whole session, not per test: a transactional test's flush, at its teardown, re-creates the
    roles (post_migrate), and with the audit switched back on first that wrote 13 entries the
    next test on the same worker found in its log."""
    account_audit.disconnect()
    yield
    account_audit.connect()


@pytest.fixture
def account_audit_on(_account_audit_off):
    """Every change to an account is audited, as in production. Ask for it before any fixture
    that creates users whose creation the test expects in the log."""
    account_audit.connect()
    yield
    account_audit.disconnect()


@pytest.fixture(autouse=True)
def _fresh_capabilities():
    clear_capabilities_cache()
    yield
    clear_capabilities_cache()


@pytest.fixture(autouse=True)
def _fresh_readings(django_db_blocker):
    """Each test takes its own samples: a process's copy of a shared snapshot or reading
    (snapshots._recent, stats.reused) holds another test's counts. A snapshot taken on a
    renewal thread (its own connection, committed) outlives the test's rolled-back transaction:
    the shared cache is emptied after a test that started any."""
    from django.core.cache import caches

    from worker_admin import snapshots

    snapshots.forget()
    started = snapshots.renewals_started
    yield
    snapshots.settle()  # a renewal started by this test's requests ends with it
    snapshots.forget()
    if snapshots.renewals_started != started:
        with django_db_blocker.unblock():
            caches[snapshots.CACHE].clear()


@pytest.fixture
def worker_rows(transactional_db):
    """For tests whose rows must be committed (other processes read them): every job, task,
    queue and worker row is truncated at teardown, since pytest-django's flush empties only
    Django's own tables. The schema itself stays."""
    yield
    truncate_worker_data(settings.WORKER_DATABASE, settings.GRAPHILE_WORKER_SCHEMA)
    clear_capabilities_cache()


@pytest.fixture
def utils(db) -> WorkerUtils:
    return WorkerUtils()


@pytest.fixture
def jobs(utils) -> JobFactory:
    return JobFactory(utils)


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user("oncall", password="correct horse battery")


@pytest.fixture
def console(client, operator):
    """A Django test client logged in as an ordinary user."""
    client.force_login(operator)
    return client


@pytest.fixture
def login_as(client, django_user_model):
    """Log the test client in as a new user with one role: login_as("operator", "op")."""

    def login(role: str, username: str):
        user = django_user_model.objects.create_user(username, password="pw-123456789")
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def worker_schema() -> str:
    return settings.GRAPHILE_WORKER_SCHEMA
