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

Inside a request, a snapshot past its interval but younger than REVALIDATE_FACTOR intervals is
answered at once, and the next one is taken after the response has gone out (request_finished)
by the process that noticed (on a thread of its own, with its own database connection), under
the same advisory lock: the viewer who happens to arrive
first in an interval does not wait for the count, and what any page shows is at most
REVALIDATE_FACTOR intervals old (the pages say "as of" when). Outside a request (commands, the
Python API) there is no "after", so a stale snapshot is renewed at once as before. A page that
can show itself without a part asks `prepare()`: with nothing usable, the part is taken the same
way, right after the response, and the page's own refresh (or a reload) finds it. One process
runs at most MAX_RENEWALS of these threads at once; past that, whoever asks next takes the
snapshot in its request. A snapshot is never made of stale ones: while compute() runs, the
snapshots it reads are renewed in its path.

The version is a digest of the value, so a queue where nothing moved keeps it: a polled page's
ETag is built from the versions of the snapshots it shows, and a refresh of unchanged data is
answered 304 Not Modified without rendering (see `worker_admin/polling.py`).
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, connections, transaction

T = TypeVar("T")
logger = logging.getLogger(__name__)
CACHE = "snapshots"
STALE_FACTOR = 5  # a snapshot this many intervals old is recomputed by whoever asks
REVALIDATE_FACTOR = 2  # younger than this many intervals: answered now, renewed after
RECENT_LIMIT = 256  # snapshots this process keeps in memory (one per page, filter and role)
MAX_RENEWALS = 4  # renewal threads one process runs at once (each holds a connection)
_recent: dict[str, Snapshot] = {}
_request = threading.local()  # .renewals: what to renew once this thread's response is out
_renewing: set[str] = set()  # keys this process is renewing now
_renewing_guard = threading.Lock()
_started: list[threading.Thread] = []  # renewal threads not yet waited for (settle)
renewals_started = 0  # how many this process has started (tests clean up after them)


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
    key = _key(name)
    mine = _recent.get(key)
    if mine is not None and mine.age < seconds:
        return mine
    return _remember(key, _shared(key, compute, seconds))


def ready(name: str, compute: Callable[[], T], *, seconds: float) -> Snapshot[T] | None:
    """The snapshot `name` if one is usable now (young, or renewed after this response as in
    `shared`), else None, without computing it: for a page that shows the rest at once and
    asks for this part right after."""
    key = _key(name)
    mine = _recent.get(key)
    if mine is not None and mine.age < seconds:
        return mine
    found = _get(caches[CACHE], key)
    return _remember(key, found) if _answer_now(key, compute, seconds, found) else None


def prepare(name: str, compute: Callable[[], T], *, seconds: float) -> Snapshot[T] | None:
    """`ready()`, and when nothing is usable, the first one is taken right after this
    request's response (outside a request: None, nothing taken). For a page that shows itself
    at once and asks for this part as soon as it has loaded: by then the part is being taken
    (its request waits for it, never takes a second), and a reload without JavaScript finds
    it. With `seconds <= 0` nothing is shared, so there is nothing to wait for: taken now."""
    if seconds <= 0:
        return shared(name, compute, seconds=seconds)
    found = ready(name, compute, seconds=seconds)
    if found is None:
        _renew_later(_key(name), compute, seconds)
    return found


def _answer_now(key: str, compute: Callable[[], T], seconds: float, found) -> bool:
    """`found` is young, or stale enough to answer while it is renewed after the response."""
    if found is None:
        return False
    if found.age < seconds:
        return True
    return found.age < seconds * REVALIDATE_FACTOR and _renew_later(key, compute, seconds)


def _key(name: str) -> str:
    return "snapshot:" + hashlib.sha256(name.encode()).hexdigest()


def _shared(key: str, compute: Callable[[], T], seconds: float) -> Snapshot[T]:
    """The shared cache's copy if young enough, else the next one (taken once, see above)."""
    cache = caches[CACHE]
    found = _get(cache, key)
    if _answer_now(key, compute, seconds, found):
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


def _renew_later(key: str, compute: Callable[[], T], seconds: float) -> bool:
    """Queue `key` for renewal after this request's response; False outside a request."""
    renewals = getattr(_request, "renewals", None)
    if renewals is None:
        return False
    from worker_admin import databases  # the compute reads the database this request is about

    renewals.setdefault(key, (compute, seconds, databases.current().name))
    return True


def on_request_started(sender, **kwargs) -> None:
    _request.renewals = {}


def on_request_finished(sender, **kwargs) -> None:
    """Renew what this request answered stale, now that its response is out: on a thread of
    its own, so that the next request on the same keep-alive connection (which the server
    reads only once this one is finished) does not wait for the count either."""
    renewals = getattr(_request, "renewals", None) or {}
    _request.renewals = None
    for key, (compute, seconds, database) in renewals.items():
        with _renewing_guard:
            if key in _renewing:
                continue  # this process is already renewing it
            if len(_renewing) >= MAX_RENEWALS:
                # A burst of new filters (a script opening many URLs): the rest are taken by
                # whoever asks next, in its own request, as without renewals.
                logger.info("Skipped renewing a snapshot: %d renewals running.", len(_renewing))
                continue
            _renewing.add(key)
        thread = threading.Thread(
            target=_renew_apart,
            args=(key, compute, seconds, database),
            name="snapshot-renewal",
            daemon=True,  # a renewal is disposable: never hold up a process that is stopping
        )
        _started[:] = [*(t for t in _started if t.is_alive()), thread]
        global renewals_started
        renewals_started += 1
        thread.start()


def _renew_apart(key: str, compute: Callable[[], T], seconds: float, database: str) -> None:
    try:
        _renew(key, compute, seconds, database)
    except Exception:  # the next request past the stale window takes it in its path
        logger.warning("Could not renew a shared snapshot.", exc_info=True)
    finally:
        connections.close_all()  # this thread's own connections end with it
        with _renewing_guard:
            _renewing.discard(key)


def settle(timeout: float = 30.0) -> None:
    """Wait for the renewals this process has started (tests, and a clean shutdown)."""
    while _started:
        _started.pop().join(timeout)


def _renew(key: str, compute: Callable[[], T], seconds: float, database: str) -> None:
    from worker_admin import databases

    cache = caches[CACHE]
    with databases.using(database), transaction.atomic(using=DEFAULT_DB_ALIAS):
        _volatile()
        if not _lock(key, wait=False):
            return  # another process is renewing it
        found = _get(cache, key)
        if found is None or found.age >= seconds:
            found = _take(cache, key, compute, seconds)
        _remember(key, found)


def connect() -> None:
    from django.core.signals import request_finished, request_started

    request_started.connect(on_request_started, dispatch_uid="worker_admin.snapshots.started")
    request_finished.connect(on_request_finished, dispatch_uid="worker_admin.snapshots.finished")


def forget() -> None:
    """Drop this process's copies and this thread's pending renewals (tests; the shared cache
    is left as it is)."""
    _recent.clear()
    _request.renewals = None


def _take(cache, key: str, compute: Callable[[], T], seconds: float) -> Snapshot[T]:
    # A snapshot is never made of stale ones (a page's rendering of counts answered stale would
    # then be kept a whole interval): while compute() runs, the snapshots it reads are renewed
    # in its path, as outside a request.
    pending, _request.renewals = getattr(_request, "renewals", None), None
    try:
        value = compute()
    finally:
        _request.renewals = pending
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
