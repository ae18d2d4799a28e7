"""What one database role ran on a server: pg_stat_statements, pg_stat_activity samples, classes.

bench/replica_watch.py gives the console a login role of its own, so that everything it runs on
the primary and on the replica can be told from the rest (the workers, the bench's own queries)
by `userid` in pg_stat_statements and `usename` in pg_stat_activity. Each statement falls in one
class, decided from its text:

- `setup`: connection and transaction noise (SET, SHOW, BEGIN, COMMIT, SAVEPOINT, Django's
  `SELECT 1` health check, set_config);
- `write`: INSERT/UPDATE/DELETE/…, a call of one of the worker schema's functions (they are its
  writes: add_job, complete_jobs, …), row locks (FOR UPDATE/SHARE) and advisory locks;
- `worker table read`: any other statement that names a table or view of the worker schema;
- `catalog/statistics read`: the rest (pg_catalog, pg_stat_*, pg_is_in_recovery(), now(), …),
  which reads no worker table.

pg_stat_statements counts calls per normalised statement for the whole window (it works on a
hot standby too, for the standby's own sessions); the pg_stat_activity samples, taken every
second on both servers, see statements as they run (each counted once per session and start
time), a check that does not depend on the extension.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field

import psycopg

SETUP, WRITE, WORKER_READ, CATALOG_READ = (
    "setup",
    "write",
    "worker table read",
    "catalog/statistics read",
)
CLASSES = (WORKER_READ, CATALOG_READ, WRITE, SETUP)

_SETUP = re.compile(
    r"^\s*(set|show|reset|discard|begin|start|commit|rollback|savepoint|release|end|deallocate)\b"
    r"|^\s*select\s+(\$1|1)\s*(as\s+\w+)?\s*;?\s*$"
    r"|^\s*select\s+set_config\s*\(",
    re.I,
)
_WRITE = re.compile(
    r"^\s*(insert|update|delete|merge|copy|truncate|create|alter|drop|grant|revoke|vacuum|"
    r"analyze|lock|cluster|reindex|refresh)\b|\bfor\s+(no\s+key\s+)?(update|share)\b"
    r"|\bpg_(try_)?advisory",
    re.I,
)


@dataclass(frozen=True)
class WorkerSchema:
    """The names a statement may use from the worker schema: its relations and functions."""

    name: str
    relations: frozenset[str]
    functions: frozenset[str]

    @classmethod
    def read(cls, conninfo: str, schema: str) -> WorkerSchema:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            relations = conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')",
                [schema],
            ).fetchall()
            functions = conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = %s",
                [schema],
            ).fetchall()
        return cls(schema, frozenset(r for (r,) in relations), frozenset(f for (f,) in functions))

    def names_used(self, query: str) -> set[str]:
        pattern = rf'"?{re.escape(self.name)}"?\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?'
        return {found.lower() for found in re.findall(pattern, query)}

    def classify(self, query: str) -> str:
        if _SETUP.search(query):
            return SETUP
        used = self.names_used(query)
        if _WRITE.search(query) or used & self.functions:
            return WRITE
        if used & self.relations:
            return WORKER_READ
        return CATALOG_READ


# -- pg_stat_statements ------------------------------------------------------------------------


@dataclass
class Statements:
    """Calls per normalised statement of one role on one server: (class, calls, query)."""

    rows: list[tuple[str, int, str]] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        found = Counter()
        for kind, calls, _query in self.rows:
            found[kind] += calls
        return {kind: found.get(kind, 0) for kind in CLASSES}

    def of(self, kind: str) -> list[tuple[int, str]]:
        return [(calls, query) for k, calls, query in self.rows if k == kind]


def reset(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def statements(conninfo: str, role: str, schema: WorkerSchema) -> Statements:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, sum(calls)::bigint FROM pg_stat_statements "
            "WHERE userid = to_regrole(%s) GROUP BY query ORDER BY 2 DESC, 1",
            [role],
        ).fetchall()
    return Statements([(schema.classify(query), calls, query) for query, calls in rows])


# -- pg_stat_activity samples ------------------------------------------------------------------

ACTIVITY_SQL = """
SELECT pid, query_start, query FROM pg_stat_activity
 WHERE usename = %s AND query_start >= %s AND query <> ''
"""


class ActivitySampler:
    """Every `seconds`, the statements `role`'s sessions run or last ran, on each server: each
    distinct (server, pid, query_start) once. Only statements started after the sampler: an
    idle session shows the last statement it ran, which may be older than the window."""

    def __init__(self, servers: dict[str, str], role: str, seconds: float = 1.0) -> None:
        self.servers, self.role, self.seconds = servers, role, seconds
        self.seen: dict[str, dict[tuple, str]] = {name: {} for name in servers}
        self.samples = 0
        self.errors: list[str] = []
        self._stop, self._started = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Start sampling; return once the window's start is read on every server."""
        self._thread.start()
        self._started.wait(timeout=30)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        conns = {
            name: psycopg.connect(url, autocommit=True, application_name="replica-watch-sampler")
            for name, url in self.servers.items()
        }
        since = {name: c.execute("SELECT now()").fetchone()[0] for name, c in conns.items()}
        self._started.set()
        try:
            while not self._stop.is_set():
                for name, conn in conns.items():
                    try:
                        for pid, start, query in conn.execute(
                            ACTIVITY_SQL, [self.role, since[name]]
                        ):
                            self.seen[name][(pid, start)] = query
                    except psycopg.Error as exc:
                        self.errors.append(f"{name}: {exc}")
                self.samples += 1
                self._stop.wait(self.seconds)
        finally:
            for conn in conns.values():
                conn.close()

    def classes(self, name: str, schema: WorkerSchema) -> dict[str, int]:
        found = Counter(schema.classify(query) for query in self.seen[name].values())
        return {kind: found.get(kind, 0) for kind in CLASSES}

    def of(self, name: str, schema: WorkerSchema, kind: str) -> list[str]:
        queries = self.seen[name].values()
        return sorted({q for q in queries if schema.classify(q) == kind})
