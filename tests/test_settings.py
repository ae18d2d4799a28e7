"""Settings come from the environment, fail fast with a sentence, and keep console tables apart."""

import os
import subprocess
import sys
from pathlib import Path

from django.db import connection

from worker_admin.models import Job

ROOT = Path(__file__).resolve().parents[1]


def _settings_probe(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    """Import the real settings in a fresh interpreter with exactly these variables."""
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    script = "import django; django.setup(); from django.conf import settings as s; " + code
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings__console_database_url_splits_aliases():
    result = _settings_probe(
        {
            "SECRET_KEY": "k",
            "DATABASE_URL": "postgresql://gw@db1:5433/queue?sslmode=require",
            "CONSOLE_DATABASE_URL": "postgresql://console@db2/console",
        },
        "from django.db import router; from worker_admin.models import Job; "
        "from django.contrib.auth.models import User; "
        "print(sorted(s.DATABASES), s.WORKER_DATABASE, router.db_for_read(Job), "
        "router.db_for_read(User), s.DATABASES['worker']['HOST'], "
        "s.DATABASES['worker']['PORT'], s.DATABASES['worker']['OPTIONS']['sslmode'], "
        "s.DATABASES['default']['NAME'])",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "['default',",
        "'worker']",
        "worker",
        "worker",
        "default",
        "db1",
        "5433",
        "require",
        "console",
    ]


def test_settings__single_database_by_default():
    result = _settings_probe(
        {"SECRET_KEY": "k", "DATABASE_URL": "postgresql://gw@db1/queue"},
        "print(sorted(s.DATABASES), s.WORKER_DATABASE, "
        "s.DATABASES['default']['OPTIONS']['options'])",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == ["['default']", "default", "-c"]
    assert "search_path=graphile_console" in result.stdout
    assert "statement_timeout=10000" in result.stdout


def test_settings__bad_values_fail_fast_with_a_sentence():
    cases = [
        ({"DATABASE_URL": "postgresql://x/y"}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "k"}, "DATABASE_URL is not set"),
        (
            {"SECRET_KEY": "k", "DATABASE_URL": "postgresql://x/y", "READ_ONLY": "maybe"},
            "READ_ONLY",
        ),
        (
            {"SECRET_KEY": "k", "DATABASE_URL": "postgresql://x/y", "POLL_INTERVAL_SECONDS": "x"},
            "POLL_INTERVAL_SECONDS='x' is not a whole number",
        ),
        ({"SECRET_KEY": "k", "DATABASE_URL": "host=x port=notaport garbage"}, "DATABASE_URL"),
        (
            {
                "SECRET_KEY": "k",
                "DATABASE_URL": "postgresql://x/y",
                "METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,intranet",
            },
            "METRICS_ALLOWED_NETWORKS: 'intranet' is not a network",
        ),
        (
            {
                "SECRET_KEY": "k",
                "DATABASE_URL": "postgresql://x/y",
                "STALE_WORKER_THRESHOLD_SECONDS": "0",
            },
            "STALE_WORKER_THRESHOLD_SECONDS",
        ),
    ]
    for env, message in cases:
        result = _settings_probe(env, "print('loaded')")
        assert result.returncode != 0, env
        assert message in result.stderr, (env, result.stderr[-400:])


def test_console_tables__live_in_their_own_schema(db, worker_schema):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name IN ('auth_user', 'django_session', 'django_migrations')"
        )
        schemas = {row[0] for row in cursor.fetchall()}
    assert schemas == {"graphile_console"}
    assert worker_schema not in schemas
    assert Job._meta.db_table == f'{worker_schema}"."_private_jobs'
