"""`manage.py check --deploy` with production settings is clean, and HTTPS=1 really sends HSTS,
secure cookies and the redirect to https (a separate process: the settings are read at start)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dbconn import server_conninfo

# Builds its own connection strings: CI runs it on the embedded PostgreSQL too.
pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[1]
HOST = "console.example.org"


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.pop("DEBUG", None)
    env.pop("CONSOLE_DEMO", None)
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        SECRET_KEY=secrets.token_urlsafe(50),
        HTTPS="1",
        TRUSTED_PROXY_COUNT="1",
        ALLOWED_HOSTS=HOST,
        DEBUG="0",
    )
    env.update(overrides)
    return env


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy__production_settings_are_clean():
    result = check_deploy(production_env())
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("overrides", "warnings"),
    [
        ({"HTTPS": "0"}, ["security.W004", "security.W008", "security.W012", "security.W016"]),
        ({"DEBUG": "1"}, ["security.W018"]),
        ({"SECRET_KEY": "short"}, ["security.W009"]),
        ({"SECURE_HSTS_INCLUDE_SUBDOMAINS": "0"}, ["security.W005"]),
        ({"TRUSTED_PROXY_COUNT": "0"}, ["console.W001"]),
    ],
    ids=["no-https", "debug", "weak-key", "hsts-without-subdomains", "https-without-proxy"],
)
def test_check_deploy__each_weakened_setting_is_reported(overrides, warnings):
    """The check is not silenced: weakening one setting brings its warning back."""
    result = check_deploy(production_env(**overrides))
    assert result.returncode != 0
    for warning in warnings:
        assert warning in result.stderr + result.stdout


def test_check__https_without_a_trusted_proxy_warns(settings):
    from worker_admin.checks import proxy_trust

    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.TRUSTED_PROXY_COUNT = 0
    [warning] = proxy_trust()
    assert warning.id == "console.W001"
    assert "TRUSTED_PROXY_COUNT is 0" in warning.msg
    settings.TRUSTED_PROXY_COUNT = 1
    assert proxy_trust() == []
    settings.SECURE_PROXY_SSL_HEADER = None
    settings.TRUSTED_PROXY_COUNT = 0
    assert proxy_trust() == []  # plain http, no proxy: nothing to contradict


def test_settings__trusted_proxy_count_defaults_to_zero_even_with_https():
    env = production_env()
    env.pop("TRUSTED_PROXY_COUNT")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; import django; "
            "django.setup(); print(settings.TRUSTED_PROXY_COUNT)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "0", result.stderr


SCRIPT = """
import json, django
django.setup()
from django.test import Client
host = {"HTTP_HOST": %(host)r}
plain = Client().get("/login/", **host)
client = Client(HTTP_X_FORWARDED_PROTO="https")
page = client.get("/login/", **host)
login = client.post("/login/", {"username": "hannah", "password": "pw-123456789"}, **host)
cookies = {
    name: {"secure": bool(c["secure"]), "httponly": bool(c["httponly"])}
    for name, c in client.cookies.items()
}
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "hsts": page.get("Strict-Transport-Security", ""),
    "login": login.status_code,
    "cookies": cookies,
}))
"""


def run_console(env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT % {"host": HOST}],
        cwd=ROOT,
        env={**env, "DATABASE_URL": server_conninfo()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def hannah(transactional_db, django_user_model, settings):
    # The console process checks with its production hasher, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    return django_user_model.objects.create_user("hannah", password="pw-123456789")


def test_https__hsts_secure_cookies_and_the_redirect(hannah):
    seen = run_console(production_env())
    assert seen["plain"] == [301, f"https://{HOST}/login/"]
    assert seen["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["login"] == 302
    assert set(seen["cookies"]) == {"csrftoken", "sessionid"}
    assert all(cookie["secure"] for cookie in seen["cookies"].values())
    assert seen["cookies"]["sessionid"]["httponly"]


def test_https__off_means_no_hsts_and_plain_cookies(hannah):
    seen = run_console(production_env(HTTPS="0"))
    assert seen["plain"][0] == 200
    assert seen["hsts"] == ""
    assert not any(cookie["secure"] for cookie in seen["cookies"].values())
