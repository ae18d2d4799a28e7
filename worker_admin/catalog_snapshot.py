"""Describe a Graphile Worker schema's catalog as plain data, for conformance comparisons.

The test suite compares the console's installed schema with the one the real npm package
installs through `catalog_snapshot`; it lives apart from the installer because it only reads.
"""

from __future__ import annotations

import contextlib
from typing import Any

from worker_admin.catalog_cursor import Cursor
from worker_admin.catalog_cursor import query as _query
from worker_admin.catalog_cursor import scalar as _scalar
from worker_admin.catalog_cursor import set_search_path as _set_search_path
from worker_admin.installer import quote_schema

# What catalog_snapshot writes instead of the schema name, so that schemas compare equal.
SNAPSHOT_SCHEMA_TOKEN = "<schema>"


def catalog_snapshot(cur: Cursor, schema: str) -> dict[str, Any]:
    """Describe everything in `schema` as plain, JSON-able data, for conformance comparisons.

    Covers relations, tables (columns in physical order with type, nullability, default, generated
    expression and identity; constraints; indexes; RLS flags; policies; triggers), sequences,
    views' columns, standalone types and functions' signatures. Function bodies and languages are
    left out on purpose: the console's SQL is written independently, so its text differs; what
    the bodies do is proven equal by tests/test_differential.py, which runs the same operations
    on both schemas and compares rows, ids, sequences, errors and notifications. The schema name
    is replaced by SNAPSHOT_SCHEMA_TOKEN everywhere, so two schemas (or databases) with the same
    shape compare equal.

    search_path is pinned to pg_catalog while reading, because pg_get_* and format_type omit the
    schema of objects on the search_path, which would make the output depend on the session.
    """
    quote_schema(schema)
    saved_search_path = _scalar(
        cur, "select pg_catalog.current_setting('search_path') as search_path"
    )
    _set_search_path(cur, "pg_catalog")
    try:
        snapshot = {
            "relations": _snapshot_relations(cur, schema),
            "tables": _snapshot_tables(cur, schema),
            "sequences": _snapshot_sequences(cur, schema),
            "views": _snapshot_views(cur, schema),
            "types": _snapshot_types(cur, schema),
            "functions": _snapshot_functions(cur, schema),
        }
    except Exception:
        # In a failed transaction the SET is undone by the caller's rollback anyway.
        with contextlib.suppress(Exception):
            _set_search_path(cur, saved_search_path)
        raise
    _set_search_path(cur, saved_search_path)
    quoted = _scalar(cur, "select pg_catalog.quote_ident(%s)", [schema])
    return _normalise(snapshot, f"{quoted}.", f"{SNAPSHOT_SCHEMA_TOKEN}.")


# --- helpers ------------------------------------------------------------------------


def _snapshot_relations(cur: Cursor, schema: str) -> dict[str, str]:
    """Every relation by kind, so that a stray table, index or sequence shows up in a diff."""
    rows = _query(
        cur,
        """
        select c.relname::text as name,
               case c.relkind
                 when 'r' then 'table' when 'p' then 'partitioned table'
                 when 'v' then 'view' when 'm' then 'materialized view'
                 when 'i' then 'index' when 'I' then 'partitioned index'
                 when 'S' then 'sequence' when 'c' then 'composite type'
                 when 'f' then 'foreign table' else c.relkind::text
               end as kind
          from pg_catalog.pg_class as c
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          where n.nspname = %s
          order by 1
        """,
        [schema],
    )
    return {name: kind for name, kind in rows}


def _snapshot_tables(cur: Cursor, schema: str) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for name, rls, force_rls in _query(
        cur,
        """
        select c.relname::text as name, c.relrowsecurity as rls,
               c.relforcerowsecurity as force_rls
          from pg_catalog.pg_class as c
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          where n.nspname = %s and c.relkind in ('r', 'p')
          order by 1
        """,
        [schema],
    ):
        tables[name] = {
            "columns": [],
            "constraints": {},
            "indexes": {},
            "row_security": rls,
            "force_row_security": force_rls,
            "policies": {},
            "triggers": {},
        }

    for table, column, type_, not_null, default, generated, identity in _query(
        cur,
        """
        select c.relname::text as table_name, a.attname::text as column_name,
               pg_catalog.format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as not_null,
               case when a.attgenerated = '' then pg_catalog.pg_get_expr(d.adbin, d.adrelid) end
                 as default_expression,
               case when a.attgenerated <> '' then pg_catalog.pg_get_expr(d.adbin, d.adrelid) end
                 as generated_expression,
               case a.attidentity when 'a' then 'always' when 'd' then 'by default' end
                 as identity
          from pg_catalog.pg_attribute as a
          join pg_catalog.pg_class as c on c.oid = a.attrelid
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          left join pg_catalog.pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum
          where n.nspname = %s and c.relkind in ('r', 'p') and a.attnum > 0
            and not a.attisdropped
          order by c.relname, a.attnum
        """,
        [schema],
    ):
        tables[table]["columns"].append(
            {
                "name": column,
                "type": type_,
                "not_null": not_null,
                "default": default,
                "generated": generated,
                "identity": identity,
            }
        )

    for table, name, type_, definition, deferrable, deferred, validated in _query(
        cur,
        """
        select c.relname::text as table_name, k.conname::text as name,
               case k.contype
                 when 'p' then 'primary key' when 'u' then 'unique' when 'c' then 'check'
                 when 'f' then 'foreign key' when 'x' then 'exclusion' else k.contype::text
               end as type,
               pg_catalog.pg_get_constraintdef(k.oid) as definition,
               k.condeferrable as deferrable, k.condeferred as deferred,
               k.convalidated as validated
          from pg_catalog.pg_constraint as k
          join pg_catalog.pg_class as c on c.oid = k.conrelid
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          where n.nspname = %s
          order by 1, 2
        """,
        [schema],
    ):
        tables[table]["constraints"][name] = {
            "type": type_,
            "definition": definition,
            "deferrable": deferrable,
            "initially_deferred": deferred,
            "validated": validated,
        }

    for table, name, definition in _query(
        cur,
        """
        select t.relname::text as table_name, i.relname::text as name,
               pg_catalog.pg_get_indexdef(i.oid) as definition
          from pg_catalog.pg_index as x
          join pg_catalog.pg_class as i on i.oid = x.indexrelid
          join pg_catalog.pg_class as t on t.oid = x.indrelid
          join pg_catalog.pg_namespace as n on n.oid = t.relnamespace
          where n.nspname = %s and t.relkind in ('r', 'p')
          order by 1, 2
        """,
        [schema],
    ):
        tables[table]["indexes"][name] = definition

    for table, name, command, permissive, roles, using, check in _query(
        cur,
        """
        select c.relname::text as table_name, p.polname::text as name,
               p.polcmd::text as command, p.polpermissive as permissive,
               (select pg_catalog.array_agg(r.rolname::text order by r.rolname)
                  from pg_catalog.pg_roles as r where r.oid = any (p.polroles)) as roles,
               pg_catalog.pg_get_expr(p.polqual, p.polrelid) as using_expression,
               pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) as check_expression
          from pg_catalog.pg_policy as p
          join pg_catalog.pg_class as c on c.oid = p.polrelid
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          where n.nspname = %s
          order by 1, 2
        """,
        [schema],
    ):
        tables[table]["policies"][name] = {
            "command": command,
            "permissive": permissive,
            "roles": roles,
            "using": using,
            "with_check": check,
        }

    for table, name, definition in _query(
        cur,
        """
        select c.relname::text as table_name, t.tgname::text as name,
               pg_catalog.pg_get_triggerdef(t.oid) as definition
          from pg_catalog.pg_trigger as t
          join pg_catalog.pg_class as c on c.oid = t.tgrelid
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          where n.nspname = %s and not t.tgisinternal
          order by 1, 2
        """,
        [schema],
    ):
        tables[table]["triggers"][name] = definition
    return tables


def _snapshot_sequences(cur: Cursor, schema: str) -> dict[str, dict[str, Any]]:
    rows = _query(
        cur,
        """
        select c.relname::text as name, pg_catalog.format_type(s.seqtypid, null) as type,
               s.seqstart, s.seqmin, s.seqmax, s.seqincrement, s.seqcycle, s.seqcache,
               (select t.relname::text || '.' || a.attname::text
                  from pg_catalog.pg_depend as d
                  join pg_catalog.pg_class as t on t.oid = d.refobjid
                  join pg_catalog.pg_attribute as a
                    on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
                  where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    and d.objid = c.oid
                    and d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    and d.refobjsubid > 0
                    and d.deptype in ('a', 'i')
                  limit 1) as owned_by
          from pg_catalog.pg_sequence as s
          join pg_catalog.pg_class as c on c.oid = s.seqrelid
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          where n.nspname = %s
          order by 1
        """,
        [schema],
    )
    return {
        name: {
            "type": type_,
            "start": start,
            "min": minimum,
            "max": maximum,
            "increment": increment,
            "cycle": cycle,
            "cache": cache,
            "owned_by": owned_by,
        }
        for name, type_, start, minimum, maximum, increment, cycle, cache, owned_by in rows
    }


def _snapshot_views(cur: Cursor, schema: str) -> dict[str, dict[str, Any]]:
    """Views by their columns in order; the definitions are ours to write and may differ."""
    views: dict[str, dict[str, Any]] = {}
    for view, kind, column, type_ in _query(
        cur,
        """
        select c.relname::text as view_name, c.relkind::text as kind,
               a.attname::text as column_name,
               pg_catalog.format_type(a.atttypid, a.atttypmod) as type
          from pg_catalog.pg_class as c
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          join pg_catalog.pg_attribute as a on a.attrelid = c.oid
          where n.nspname = %s and c.relkind in ('v', 'm') and a.attnum > 0
            and not a.attisdropped
          order by c.relname, a.attnum
        """,
        [schema],
    ):
        entry = views.setdefault(view, {"materialized": kind == "m", "columns": []})
        entry["columns"].append([column, type_])
    return views


def _snapshot_types(cur: Cursor, schema: str) -> dict[str, dict[str, Any]]:
    """Standalone types; row types of tables and automatic array types are left out."""
    types: dict[str, dict[str, Any]] = {}
    for name, kind, detail in _query(
        cur,
        """
        select t.typname::text as name, t.typtype::text as kind,
               case t.typtype
                 when 'd' then pg_catalog.format_type(t.typbasetype, t.typtypmod)
                 when 'e' then (select pg_catalog.string_agg(e.enumlabel::text, ','
                                                             order by e.enumsortorder)
                                  from pg_catalog.pg_enum as e where e.enumtypid = t.oid)
               end as detail
          from pg_catalog.pg_type as t
          join pg_catalog.pg_namespace as n on n.oid = t.typnamespace
          left join pg_catalog.pg_class as c on c.oid = t.typrelid
          where n.nspname = %s
            and (t.typtype in ('d', 'e', 'r') or (t.typtype = 'c' and c.relkind = 'c'))
          order by 1
        """,
        [schema],
    ):
        kinds = {"c": "composite", "d": "domain", "e": "enum", "r": "range"}
        types[name] = {"kind": kinds[kind], "detail": detail, "attributes": []}
    for type_name, attribute, type_ in _query(
        cur,
        """
        select c.relname::text as type_name, a.attname::text as attribute,
               pg_catalog.format_type(a.atttypid, a.atttypmod) as type
          from pg_catalog.pg_class as c
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          join pg_catalog.pg_attribute as a on a.attrelid = c.oid
          where n.nspname = %s and c.relkind = 'c' and a.attnum > 0 and not a.attisdropped
          order by c.relname, a.attnum
        """,
        [schema],
    ):
        types[type_name]["attributes"].append([attribute, type_])
    return types


def _snapshot_functions(cur: Cursor, schema: str) -> dict[str, dict[str, Any]]:
    """Functions by signature: what callers depend on, without bodies or languages."""
    rows = _query(
        cur,
        """
        select p.proname::text as name,
               pg_catalog.pg_get_function_identity_arguments(p.oid) as identity_arguments,
               pg_catalog.pg_get_function_arguments(p.oid) as arguments,
               pg_catalog.pg_get_function_result(p.oid) as result,
               p.prokind::text as kind, p.proisstrict as strict, p.proretset as returns_set,
               p.provolatile::text as volatility, p.prosecdef as security_definer
          from pg_catalog.pg_proc as p
          join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
          where n.nspname = %s
          order by 1, 2
        """,
        [schema],
    )
    kinds = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window"}
    volatility = {"v": "volatile", "s": "stable", "i": "immutable"}
    return {
        f"{name}({identity})": {
            "name": name,
            "identity_arguments": identity,
            "arguments": arguments,
            "result": result,
            "kind": kinds.get(kind, kind),
            "strict": strict,
            "returns_set": returns_set,
            "volatility": volatility.get(volatile, volatile),
            "security_definer": security_definer,
        }
        for (
            name,
            identity,
            arguments,
            result,
            kind,
            strict,
            returns_set,
            volatile,
            security_definer,
        ) in rows
    }


def _normalise(value: Any, old: str, new: str) -> Any:
    """Replace the qualified schema prefix in every string of a nested structure."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {_normalise(k, old, new): _normalise(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, old, new) for v in value]
    return value
