"""Login throttling (django-axes): a handful of wrong passwords for one user name from one
address locks that pair out for a cool-off, with a plain message; a success resets the count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

PASSWORD = "correct horse battery"
LOCKED = "Too many failed log-ins"


@pytest.fixture(autouse=True)
def _limit(settings):
    settings.AXES_FAILURE_LIMIT = 3


@pytest.fixture
def login(client, operator):
    def attempt(password: str, username: str = "oncall", **extra):
        data = {"username": username, "password": password}
        return client.post(reverse("login"), data, **extra)

    return attempt


def _fail(login, times: int, **extra) -> None:
    for _ in range(times):
        response = login("wrong-password", **extra)
        assert response.status_code in (200, 429)


def test_throttle__right_password_after_the_limit_is_refused_with_a_message(login, client):
    _fail(login, 3)
    response = login(PASSWORD)
    assert response.status_code == 429
    body = response.content.decode()
    assert LOCKED in body
    assert "3 wrong passwords" in body and "15 minutes" in body
    assert "Traceback" not in body
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("worker_admin:overview")).status_code == 302  # still not in


def test_throttle__below_the_limit_the_right_password_works(login, client):
    _fail(login, 2)
    response = login(PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == reverse("worker_admin:overview")


def test_throttle__a_success_resets_the_count(login, client):
    _fail(login, 2)
    assert login(PASSWORD).status_code == 302
    client.logout()
    _fail(login, 2)
    assert login(PASSWORD).status_code == 302


def test_throttle__after_the_cool_off_the_right_password_works(login):
    _fail(login, 3)
    assert login(PASSWORD).status_code == 429
    # The cool-off passes: the recorded failures are older than LOGIN_COOLOFF_MINUTES.
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    )
    assert login(PASSWORD).status_code == 302


def test_throttle__an_admin_can_unlock_at_once(login):
    _fail(login, 3)
    assert login(PASSWORD).status_code == 429
    call_command("axes_reset_username", "oncall")
    assert login(PASSWORD).status_code == 302


def test_throttle__per_user_name_and_address(login, django_user_model):
    django_user_model.objects.create_user("other", password=PASSWORD)
    _fail(login, 3)
    assert login(PASSWORD, username="other").status_code == 302  # another user, same address
    assert login(PASSWORD, REMOTE_ADDR="10.0.0.9").status_code == 302  # same user, elsewhere


def test_throttle__behind_the_https_proxy_the_forwarded_address_counts(login, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    # The client forges a first X-Forwarded-For entry; the proxy appends the real address.
    _fail(login, 3, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7", **proxy)
    assert login(PASSWORD, HTTP_X_FORWARDED_FOR="5.6.7.8, 203.0.113.7", **proxy).status_code == 429
    # Another client behind the same proxy is not locked out with it.
    assert login(PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.2", **proxy).status_code == 302
    assert AccessAttempt.objects.get().ip_address == "203.0.113.7"


def test_throttle__attempts_never_store_the_password(login):
    _fail(login, 1)
    attempt = AccessAttempt.objects.get()
    assert "wrong-password" not in f"{attempt.get_data} {attempt.post_data}"


def test_throttle__tables_live_in_the_console_schema(db, settings):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL",
            [f"{settings.CONSOLE_SCHEMA}.axes_accessattempt"],
        )
        assert cursor.fetchone()[0]


def test_throttle__many_addresses_against_one_account_lock_the_account(login, settings):
    """Each address stays under the per-address limit; together they pass the account's."""
    settings.LOGIN_ACCOUNT_FAILURE_LIMIT = 6
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        _fail(login, 2, REMOTE_ADDR=address)
    response = login(PASSWORD, REMOTE_ADDR="198.51.100.77")  # a fresh address, right password
    assert response.status_code == 429
    body = response.content.decode()
    assert "from several addresses" in body and "15 minutes" in body
    counts = dict(AccessAttempt.objects.values_list("ip_address", "failures_since_start"))
    assert {
        a: counts[a] for a in ("198.51.100.1", "198.51.100.2", "198.51.100.3")
    } == dict.fromkeys(
        ("198.51.100.1", "198.51.100.2", "198.51.100.3"), 2
    )  # each address stayed under the per-address limit of 3


def test_throttle__the_account_limit_counts_only_that_account(login, settings, django_user_model):
    settings.LOGIN_ACCOUNT_FAILURE_LIMIT = 6
    django_user_model.objects.create_user("other", password=PASSWORD)
    for address in ("198.51.100.1", "198.51.100.2"):
        _fail(login, 2, REMOTE_ADDR=address)
    # 4 failures: below the account limit, so a fifth address still gets in.
    assert login(PASSWORD, REMOTE_ADDR="198.51.100.5").status_code == 302
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        _fail(login, 2, REMOTE_ADDR=address)
    assert login(PASSWORD, username="other", REMOTE_ADDR="198.51.100.9").status_code == 302


def test_throttle__the_account_limit_defaults_above_the_per_address_one():
    from django.conf import settings

    assert settings.LOGIN_ACCOUNT_FAILURE_LIMIT == 20
    assert settings.LOGIN_ACCOUNT_FAILURE_LIMIT > 5  # LOGIN_FAILURE_LIMIT's default


def test_throttle__without_a_trusted_proxy_a_forged_forwarded_for_changes_nothing(login, settings):
    """No proxy trusted (the default): X-Forwarded-For is the client's own text and is ignored,
    so varying it does not spread the failures over made-up addresses."""
    assert settings.TRUSTED_PROXY_COUNT == 0
    for forged in ("1.2.3.4", "5.6.7.8", "9.9.9.9"):
        _fail(login, 1, HTTP_X_FORWARDED_FOR=forged, REMOTE_ADDR="192.0.2.10")
    response = login(PASSWORD, HTTP_X_FORWARDED_FOR="10.10.10.10", REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 429
    # One record, for the socket's address: the forged ones were never counted as addresses.
    assert AccessAttempt.objects.get().ip_address == "192.0.2.10"


def test_throttle__a_success_elsewhere_keeps_the_accounts_count(login, settings):
    """The owner logging in from their own address resets that address's count only: the
    failures others ran up still count towards the account's limit."""
    settings.LOGIN_ACCOUNT_FAILURE_LIMIT = 6
    for address in ("198.51.100.1", "198.51.100.2"):
        _fail(login, 2, REMOTE_ADDR=address)
    assert login(PASSWORD, REMOTE_ADDR="192.0.2.50").status_code == 302
    _fail(login, 2, REMOTE_ADDR="198.51.100.3")
    assert login(PASSWORD, REMOTE_ADDR="192.0.2.51").status_code == 429
