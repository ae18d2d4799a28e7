"""One snapshot per interval, shared by every console process and every user.

Twenty people watching the overview during an incident must cost what one does: their tabs poll
every few seconds, and without sharing each poll would sample the jobs table again, in each
server process. `shared(name, compute, seconds=...)` keeps the last result of `compute()` in
Django's database cache (the console's own table, `console_snapshot_cache`, so every process
and host behind a load balancer sees it) with the time it was taken and a version. A result
younger than `seconds` is returned as it is. When it is older, one process takes a transaction
advisory lock and computes the next one while the others keep answering with the previous
snapshot (up to STALE_FACTOR intervals old), so a slow count is never run twice at once; with
no usable snapshot at all they wait for the one being taken rather than take their own.

Each process also keeps its last copy of every snapshot it served (`_recent`): until that copy
is `seconds` old a poll is answered from memory, without reading the shared cache, so a
process reads each snapshot at most once per interval however many users poll it.

The version is a digest of the value, so a queue where nothing moved keeps it: a polled page's
ETag is built from the versions of the snapshots it shows, and a refresh of unchanged data is
answered 304 Not Modified without rendering (see `worker_admin/polling.py`).
"""

from __future__ import annotations

import hashlib
import pickle
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, connections, transaction

T = TypeVar("T")
CACHE = "snapshots"
STALE_FACTOR = 5  # a snapshot this many intervals old is recomputed by whoever asks
RECENT_LIMIT = 256  # snapshots this process keeps in memory (one per page, filter and role)
_recent: dict[str, Snapshot] = {}


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    value: T
    version: str
    taken_at: float  # time.time() when compute() returned

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.taken_at)


def shared(name: str, compute: Callable[[], T], *, seconds: float) -> Snapshot[T]:
    """The snapshot `name`, taken at most `seconds` ago (or by whoever is taking the next)."""
    key = "snapshot:" + hashlib.sha256(name.encode()).hexdigest()
    mine = _recent.get(key)
    if mine is not None and mine.age < seconds:
        return mine
    return _remember(key, _shared(key, compute, seconds))


def _shared(key: str, compute: Callable[[], T], seconds: float) -> Snapshot[T]:
    """The shared cache's copy if young enough, else the next one (taken once, see above)."""
    cache = caches[CACHE]
    found = _get(cache, key)
    if found is not None and found.age < seconds:
        return found
    with transaction.atomic(using=DEFAULT_DB_ALIAS):
        _volatile()
        if not _lock(key, wait=False):
            if found is not None and found.age < seconds * STALE_FACTOR:
                return found  # another process is taking the next one
            _lock(key, wait=True)  # nothing usable yet: wait for the one being taken
        found = _get(cache, key)  # taken by another process while we asked for the lock
        if found is not None and found.age < seconds:
            return found
        return _take(cache, key, compute, seconds)


def _remember(key: str, snapshot: Snapshot[T]) -> Snapshot[T]:
    if len(_recent) >= RECENT_LIMIT and key not in _recent:
        _recent.clear()  # a burst of distinct filters: start over rather than grow
    _recent[key] = snapshot
    return snapshot


def forget() -> None:
    """Drop this process's copies (tests; the shared cache is left as it is)."""
    _recent.clear()


def _take(cache, key: str, compute: Callable[[], T], seconds: float) -> Snapshot[T]:
    value = compute()
    snapshot = Snapshot(value, version_of(value), time.time())
    blob = zlib.compress(pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL), 1)
    cache.set(key, blob, timeout=max(60, int(seconds * STALE_FACTOR * 2)))
    return snapshot


def version_of(value) -> str:
    """Equal values, equal versions: a queue where nothing moved keeps its version (and a
    polled page its ETag) from one snapshot to the next."""
    try:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        return uuid.uuid4().hex[:16]
    return hashlib.sha256(blob).hexdigest()[:16]


def _get(cache, key: str) -> Snapshot | None:
    """The stored snapshot (compressed: a rendered overview is ~120 KB of HTML, ~12 KB so)."""
    blob = cache.get(key)
    if isinstance(blob, Snapshot):  # stored by a console from before the compression
        return blob
    try:
        return pickle.loads(zlib.decompress(blob)) if blob is not None else None
    except (zlib.error, pickle.UnpicklingError, TypeError):
        return None  # unreadable: taken again


def _volatile() -> None:
    """This transaction's commit does not wait for the WAL to reach the disk.

    Snapshots are disposable (a crash loses at most the last one, which is taken again), and a
    job queue's throughput is bounded by its WAL flushes: with twenty users watching, the
    console's synchronous commits of snapshots were extra flushes every worker's commit queued
    behind (LWLock WALWrite was the workers' main wait)."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")


def _lock(key: str, *, wait: bool) -> bool:
    """A transaction advisory lock named after the snapshot (the statement timeout bounds a
    wait)."""
    lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_id])
        return bool(cursor.fetchone()[0])
