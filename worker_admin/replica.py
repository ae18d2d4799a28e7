"""Reads from a streaming replica of the worker database, when one is configured and healthy.

`read_alias()` is what read-only pages, the JSON API's reads and /metrics pass to their
queries: the replica's alias (`worker_replica`, from DATABASE_REPLICA_URL) while the replica
answers, is in recovery (a standby, not a promoted or mistyped primary) and replays within
REPLICA_LAG_MAX_SECONDS of the primary; otherwise the primary's alias (WORKER_DATABASE).
Writes, previews that pin targets and the re-checks before a write never ask: they use
WORKER_DATABASE, because a target read on a replica may already be gone on the primary.

The check is cached per process for REPLICA_CHECK_SECONDS, failures included: a replica that is
down costs one short connect (REPLICA_CONNECT_TIMEOUT_SECONDS) per interval, not one per
request. It runs on a connection of its own, never the request's, so a dead replica cannot
leave a broken connection behind in Django's pool.

Lag is `now() - pg_last_xact_replay_timestamp()`, except when the replica has replayed all it
received: then it is 0. Without that exception an idle primary (no commits for an hour) would
make a caught-up replica look an hour behind.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass

import psycopg
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.dispatch import receiver

from worker_admin import databases

logger = logging.getLogger(__name__)

REPLICA_ALIAS = "worker_replica"

LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END
"""


@dataclass(frozen=True)
class ReplicaStatus:
    """What the last check found. `in_use` is what read_alias() acts on."""

    configured: bool
    in_use: bool = False
    lag_seconds: float | None = None
    error: str | None = None

    @property
    def alias(self) -> str:
        return REPLICA_ALIAS if self.in_use else settings.WORKER_DATABASE

    @property
    def lagging(self) -> bool:
        """In use, but behind by at least REPLICA_LAG_WARN_SECONDS: the banner says so."""
        lag = self.lag_seconds or 0.0
        return self.in_use and lag > 0 and lag >= settings.REPLICA_LAG_WARN_SECONDS

    @property
    def fallen_back(self) -> bool:
        return self.configured and not self.in_use

    def as_json(self) -> dict:
        lag = None if self.lag_seconds is None else round(self.lag_seconds, 3)
        return {
            "configured": self.configured,
            "in_use": self.in_use,
            "lag_seconds": lag,
            "error": self.error,
        }


NOT_CONFIGURED = ReplicaStatus(configured=False)

_lock = threading.Lock()
_cached: tuple[float, ReplicaStatus] | None = None
# The status this request's reads were routed by (None: it read nothing through read_alias()),
# so the banner appears only on pages that read, and says what they read from.
_chosen: contextvars.ContextVar[ReplicaStatus | None] = contextvars.ContextVar(
    "replica_chosen", default=None
)
_in_request: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "replica_in_request", default=False
)


def configured() -> bool:
    return REPLICA_ALIAS in settings.DATABASES and settings.REPLICA_READS


def status() -> ReplicaStatus:
    """The replica's health, checked at most once per REPLICA_CHECK_SECONDS in this process."""
    global _cached
    if not configured():
        return NOT_CONFIGURED
    now = time.monotonic()
    cached = _cached
    if cached is not None and now - cached[0] < settings.REPLICA_CHECK_SECONDS:
        return cached[1]
    with _lock:  # one check at a time; the threads waiting for it take its result
        cached = _cached
        if cached is not None and time.monotonic() - cached[0] < settings.REPLICA_CHECK_SECONDS:
            return cached[1]
        found = check()
        _cached = (time.monotonic(), found)
        return found


def check() -> ReplicaStatus:
    """Ask the replica now, on a connection of its own with a short connect timeout."""
    try:
        with psycopg.connect(**_check_params(), autocommit=True) as conn:
            in_recovery, lag = conn.execute(LAG_SQL).fetchone()
    except psycopg.Error as exc:
        # The driver's words name the host and port: the log gets them; /healthz, which is
        # open to anyone, and the banner get the short reason.
        logger.warning("Replica check failed, reading from the primary: %s", exc)
        return ReplicaStatus(configured=True, error="unreachable")
    if not in_recovery:
        return ReplicaStatus(
            configured=True,
            error="not in recovery: DATABASE_REPLICA_URL names a primary, not a standby",
        )
    if lag is None:
        return ReplicaStatus(configured=True, error="lag unknown: nothing replayed yet")
    lag = max(0.0, float(lag))
    if lag > settings.REPLICA_LAG_MAX_SECONDS:
        return ReplicaStatus(
            configured=True,
            lag_seconds=lag,
            error=f"{lag:.0f} s behind, more than REPLICA_LAG_MAX_SECONDS "
            f"({settings.REPLICA_LAG_MAX_SECONDS} s)",
        )
    return ReplicaStatus(configured=True, in_use=True, lag_seconds=lag)


def _check_params() -> dict:
    """The replica alias's connection settings, as libpq keywords, with the short timeout."""
    config = settings.DATABASES[REPLICA_ALIAS]
    params = {
        "dbname": config["NAME"],
        "user": config["USER"],
        "password": config["PASSWORD"],
        "host": config["HOST"],
        "port": config["PORT"],
        **config.get("OPTIONS", {}),
    }
    params["connect_timeout"] = settings.REPLICA_CONNECT_TIMEOUT_SECONDS
    params["application_name"] = f"{settings.APPLICATION_NAME} replica check"
    return {key: value for key, value in params.items() if value not in ("", None)}


def read_alias() -> str:
    """The alias a read-only page, API read or scrape should read the worker schema from.

    Within a request the first answer holds for the rest of it, so one page never mixes rows
    from the replica with counts from the primary when the check expires half-way.
    """
    database = databases.current()
    if not database.is_main:
        return database.alias  # DATABASE_REPLICA_URL replicates the main worker database only
    found = _chosen.get() if _in_request.get() else None
    if found is None:
        found = status()
        _chosen.set(found)
    return found.alias


def chosen() -> ReplicaStatus | None:
    """How this request's reads were routed, if it made any through read_alias()."""
    return _chosen.get()


def chosen_alias() -> str:
    """The alias this request's reads went to through read_alias(), without deciding anything:
    the primary's when it made none (a form, the maintenance page) or reads another database."""
    database = databases.current()
    found = _chosen.get() if _in_request.get() else None
    if not database.is_main or found is None:
        return database.alias
    return found.alias


def mark_unavailable(error: str) -> None:
    """A read on the replica failed mid-interval: read from the primary until the next check."""
    global _cached
    if configured():
        with _lock:
            _cached = (time.monotonic(), ReplicaStatus(configured=True, error=error))


def forget() -> None:
    """Drop the cached check (tests and the benchmark switch replicas in one process)."""
    global _cached
    with _lock:
        _cached = None


@receiver(request_started)
def _request_started(**_kwargs) -> None:
    # Threads serve one request after another: the previous request's choice must not leak.
    _chosen.set(None)
    _in_request.set(True)


@receiver(request_finished)
def _request_finished(**_kwargs) -> None:
    # Outside requests (the CLI's history loop, a scrape in a script) every call checks anew.
    _in_request.set(False)
