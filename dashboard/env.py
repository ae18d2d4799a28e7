"""Strict readers for environment variables: a bad value fails at start, naming the variable."""

from __future__ import annotations

import os
from urllib.parse import unquote

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no.")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_database_url(url: str, name: str = "DATABASE_URL") -> dict:
    """Turn a libpq URL or key=value string into a Django DATABASES entry.

    psycopg's parser understands both forms (and `?host=/socket/dir`), so we do not write our own.
    """
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg raises ProgrammingError with the libpq message
        raise ImproperlyConfigured(f"{name} cannot be parsed: {exc}") from None
    params = {key: unquote(str(value)) for key, value in params.items()}
    config = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.pop("dbname", "") or params.get("user", "postgres"),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
    }
    config["EXTRA_OPTIONS"] = params  # sslmode and friends, merged into OPTIONS by settings
    return config
