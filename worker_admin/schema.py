"""What the connected database can do, read from the catalog once and cached briefly.

Several console processes must give the same answer (after one of them, npm's installer or a
Rust worker adds the recovery objects, every process shows them at once), so a cached value is
trusted for at most PROBE_SECONDS without asking the catalog whether the schema changed: one
small query over the schema's own relations and functions (their oids and row versions, the
jobs table's privileges, row-level security and policies). Only when that fingerprint differs
is the whole detection run again; CACHE_SECONDS bounds what the fingerprint cannot see.

Pages use `capabilities()` (the primary's) or `read_capabilities()` (the server they read
from, a replica's when one is in use) to show or hide features, and `Capabilities.problem` is
the one plain sentence shown on every page when the console cannot show the truth (no schema, an
unsupported version, or row-level security hiding the jobs from the connected role).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connections

from worker_admin import databases, replica
from worker_admin.installer import RECOVERY_FUNCTIONS, Flavour, detect_flavour, quote_schema

CACHE_SECONDS = 30.0
PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class Capabilities:
    schema: str
    flavour: Flavour
    has_workers_table: bool
    has_recovery_functions: bool
    has_force_unlock: bool
    can_read_jobs: bool
    rls_blocks_reads: bool
    connected_role: str
    latest_migration: int | None
    server_version: str

    @property
    def has_recovery(self) -> bool:
        return self.has_workers_table and self.has_recovery_functions

    @property
    def flavour_label(self) -> str:
        return {
            Flavour.ABSENT: "not installed",
            Flavour.LEGACY: "legacy (graphile-worker 0.15 or older, unsupported)",
            Flavour.NODE: "node (graphile-worker 0.16–0.18)",
            Flavour.RUST_RECOVERY: "rust-recovery (node schema + worker recovery)",
        }[self.flavour]

    @property
    def usable(self) -> bool:
        return self.problem is None

    @property
    def problem(self) -> str | None:
        if self.flavour is Flavour.ABSENT:
            return (
                f'There is no Graphile Worker schema "{self.schema}" in this database: '
                "install it with `python3 manage.py graphile_worker migrate`, or set "
                "GRAPHILE_WORKER_SCHEMA to the schema your workers use."
            )
        if self.flavour is Flavour.LEGACY:
            return (
                f'Unsupported schema version: "{self.schema}".jobs is a table '
                "(graphile-worker 0.15 or older); upgrade it with graphile-worker 0.16+ first."
            )
        if not self.can_read_jobs:
            return (
                f'Connected role "{self.connected_role}" has no SELECT privilege on '
                f"{self.schema}._private_jobs: grant it, or connect as the schema owner."
            )
        if self.rls_blocks_reads:
            return (
                f'Connected role "{self.connected_role}" cannot read {self.schema}._private_jobs: '
                "row-level security is enabled on it with no policy for this role, so every "
                "count would read zero. Connect as the schema owner or a role with BYPASSRLS."
            )
        return None


@dataclass
class _Cached:
    value: Capabilities
    fingerprint: str
    detected_at: float
    probed_at: float


_cache: dict[tuple[str, str], _Cached] = {}


def capabilities(alias: str | None = None, schema: str | None = None) -> Capabilities:
    alias = alias or databases.current().alias
    schema = schema or settings.GRAPHILE_WORKER_SCHEMA
    cached = _cache.get((alias, schema))
    now = time.monotonic()
    if cached and now - cached.detected_at < CACHE_SECONDS:
        if now - cached.probed_at < PROBE_SECONDS:
            return cached.value
        fingerprint = catalog_fingerprint(alias, schema)
        if fingerprint == cached.fingerprint:
            cached.probed_at = now
            return cached.value
    fingerprint = catalog_fingerprint(alias, schema)
    value = detect(alias, schema)
    _cache[(alias, schema)] = _Cached(value, fingerprint, now, now)
    return value


def read_capabilities() -> Capabilities:
    """What the server this request reads the worker schema from can do: the replica's
    capabilities while it is in use (worker_admin/replica.py), else the primary's.

    For read-only pages and API reads: their queries run on read_alias(), so what they may
    read (the workers table, the schema's version, row-level security) is that server's, which
    a lagging replica may not share with the primary yet. Writes, previews and the re-checks
    before a write call capabilities(), which asks the primary."""
    return capabilities(replica.read_alias())


def catalog_fingerprint(alias: str, schema: str) -> str:
    """A digest of what capabilities depend on; it changes when any of it changes."""
    with connections[alias].cursor() as cursor:
        cursor.execute(
            """
            SELECT md5(concat_ws('|',
                n.oid,
                (SELECT string_agg(c.oid || ':' || c.xmin, ',' ORDER BY c.oid)
                   FROM pg_class c WHERE c.relnamespace = n.oid),
                (SELECT string_agg(p.oid || ':' || p.xmin, ',' ORDER BY p.oid)
                   FROM pg_proc p WHERE p.pronamespace = n.oid),
                (SELECT string_agg(pol.oid || ':' || pol.xmin, ',' ORDER BY pol.oid)
                   FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid
                  WHERE c.relnamespace = n.oid),
                current_user))
            FROM (SELECT %s::text AS name) wanted
            LEFT JOIN pg_namespace n ON n.nspname = wanted.name
            """,
            [schema],
        )
        return cursor.fetchone()[0] or ""


def clear_capabilities_cache() -> None:
    _cache.clear()


def detect(alias: str, schema: str) -> Capabilities:
    with connections[alias].cursor() as cursor:
        flavour = detect_flavour(cursor, schema)
        cursor.execute(
            "SELECT current_user, current_setting('server_version'), "
            "to_regclass(%s) IS NOT NULL, "
            "EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "        WHERE n.nspname = %s AND p.proname = 'force_unlock_workers'), "
            "(SELECT count(DISTINCT p.proname) FROM pg_proc p "
            " JOIN pg_namespace n ON n.oid = p.pronamespace "
            " WHERE n.nspname = %s AND p.proname = ANY(%s))",
            [f"{quote_schema(schema)}._private_workers", schema, schema, list(RECOVERY_FUNCTIONS)],
        )
        role, version, has_workers, has_force_unlock, recovery_count = cursor.fetchone()
        can_read, rls_blocks = _jobs_readability(cursor, schema, flavour)
        latest = _latest_migration(cursor, schema, flavour) if can_read else None
    return Capabilities(
        schema=schema,
        flavour=flavour,
        has_workers_table=has_workers,
        has_recovery_functions=recovery_count == len(RECOVERY_FUNCTIONS),
        has_force_unlock=has_force_unlock,
        can_read_jobs=can_read,
        rls_blocks_reads=rls_blocks,
        connected_role=role,
        latest_migration=latest,
        server_version=version,
    )


def _jobs_readability(cursor, schema: str, flavour: Flavour) -> tuple[bool, bool]:
    """(has SELECT privilege, row-level security hides every row from this role)."""
    if flavour not in (Flavour.NODE, Flavour.RUST_RECOVERY):
        return True, False
    cursor.execute(
        """
        SELECT has_table_privilege(c.oid, 'SELECT'),
               c.relrowsecurity
               AND NOT r.rolbypassrls
               AND NOT r.rolsuper
               AND (NOT pg_has_role(c.relowner, 'USAGE') OR c.relforcerowsecurity)
               AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
        FROM pg_class c, pg_roles r
        WHERE c.oid = to_regclass(%s) AND r.rolname = current_user
        """,
        [f"{quote_schema(schema)}._private_jobs"],
    )
    row = cursor.fetchone()
    return (bool(row[0]), bool(row[1])) if row else (False, False)


def _latest_migration(cursor, schema: str, flavour: Flavour) -> int | None:
    if flavour not in (Flavour.NODE, Flavour.RUST_RECOVERY):
        return None
    cursor.execute(f"SELECT max(id) FROM {quote_schema(schema)}.migrations")
    return cursor.fetchone()[0]
