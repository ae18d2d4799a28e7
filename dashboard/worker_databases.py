"""Parse GRAPHILE_WORKER_DATABASES: several Graphile Worker databases in one console.

The simple case stays one variable: DATABASE_URL (and GRAPHILE_WORKER_SCHEMA) name the worker
database, called GRAPHILE_WORKER_NAME ("main"). GRAPHILE_WORKER_DATABASES adds more, as a JSON
object from a name to a URL, or to an object:

    {"billing": "postgresql://console@billing-db/app",
     "search": {"url": "postgresql://console@search-db/app",
                "max_role": "viewer", "groups": ["search-oncall"]}}

`max_role` caps what anyone may do there (a database operators may only read: "viewer");
`groups`, when given, limits who may open it to members of those Django groups (superusers
always may). `schema`, if given, must be GRAPHILE_WORKER_SCHEMA: one schema name for all, for
now. Names appear in URLs (/db/<name>/…), the
audit log, metrics labels and the CLI's --database, so they are short slugs.

Plain Python: settings.py calls `parse()` before Django is set up, and a mistake stops the
console at start with a sentence naming the variable and the entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
ROLES = ("viewer", "operator", "admin")
VARIABLE = "GRAPHILE_WORKER_DATABASES"


@dataclass(frozen=True)
class DatabaseEntry:
    name: str
    url: str
    schema: str
    max_role: str = "admin"
    groups: tuple[str, ...] = field(default_factory=tuple)


def check_name(name: str, variable: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ImproperlyConfigured(
            f"{variable}: {name!r} is not a usable database name (lower-case letters, digits, "
            "'-' and '_', starting with a letter or digit, at most 40 characters)."
        )
    return name


def parse(text: str, *, main: str, default_schema: str) -> list[DatabaseEntry]:
    """The extra databases `text` names, in the order given; [] when `text` is empty."""
    if not text.strip():
        return []
    try:
        raw = json.loads(text)
    except ValueError as error:
        raise ImproperlyConfigured(
            f"{VARIABLE} is not valid JSON ({error.msg} at character {error.pos}); write an "
            'object such as {"billing": "postgresql://user@host/db"}.'
        ) from None
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"{VARIABLE} must be a JSON object from names to databases.")
    entries = []
    for name, value in raw.items():
        check_name(name, VARIABLE)
        if name == main:
            raise ImproperlyConfigured(
                f"{VARIABLE}: {name!r} is already the name of DATABASE_URL's database "
                "(GRAPHILE_WORKER_NAME); give it another name."
            )
        entries.append(_entry(name, value, default_schema))
    return entries


def _entry(name: str, value, default_schema: str) -> DatabaseEntry:
    where = f"{VARIABLE}[{name!r}]"
    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{where} must be a URL or an object with a 'url'.")
    unknown = set(value) - {"url", "schema", "max_role", "groups"}
    if unknown:
        raise ImproperlyConfigured(
            f"{where} has unknown keys {sorted(unknown)}; known: url, schema, max_role, groups."
        )
    url = value.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ImproperlyConfigured(f"{where} needs a 'url' (a libpq URL or key=value string).")
    schema = value.get("schema", default_schema)
    if schema != default_schema:
        # The console's models and SQL are bound to one schema name at start; a schema per
        # database would need them rebuilt per request. Refuse rather than read the wrong one.
        raise ImproperlyConfigured(
            f"{where}: every worker database must use the schema GRAPHILE_WORKER_SCHEMA "
            f"({default_schema!r}); a different schema per database is not supported yet."
        )
    max_role = value.get("max_role", "admin")
    if max_role not in ROLES:
        raise ImproperlyConfigured(f"{where}: 'max_role' must be one of {', '.join(ROLES)}.")
    groups = value.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and g for g in groups):
        raise ImproperlyConfigured(f"{where}: 'groups' must be a list of group names.")
    return DatabaseEntry(name, url, schema, max_role, tuple(groups))
