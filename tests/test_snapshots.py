"""Shared snapshots (worker_admin/snapshots.py): however many requests ask at once, from however
many processes (threads with their own database connections here; tests/test_multiprocess.py
has two real servers), one computes and the others get its result."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from django.core.cache import caches

from tests.test_operations_guarantees import _all_at_once
from worker_admin import snapshots


@pytest.fixture
def empty_cache(transactional_db):
    caches[snapshots.CACHE].clear()
    yield
    caches[snapshots.CACHE].clear()


def _counting_compute(calls: list, delay: float = 0.3):
    def compute():
        calls.append(threading.get_ident())
        time.sleep(delay)  # a slow count: the others arrive while it runs
        return {"ready": len(calls)}

    return compute


def test_a_cold_start_asked_by_many_at_once_computes_once(empty_cache):
    calls: list = []
    compute = _counting_compute(calls)
    got = _all_at_once(lambda: snapshots.shared("overview", compute, seconds=10))
    assert len(calls) == 1
    assert {snap.version for snap in got} == {got[0].version}
    assert all(snap.value == {"ready": 1} for snap in got)


def test_an_expired_snapshot_is_renewed_once_while_the_others_keep_the_old(empty_cache):
    calls: list = []
    compute = _counting_compute(calls)
    first = snapshots.shared("overview", compute, seconds=0.2)
    time.sleep(0.3)  # expired, still usable while the next one is taken
    got = _all_at_once(lambda: snapshots.shared("overview", compute, seconds=0.2))
    assert len(calls) == 2  # the first, and exactly one renewal
    versions = {snap.version for snap in got}
    assert versions <= {first.version, next(s.version for s in got if s.value == {"ready": 2})}


def test_a_fresh_snapshot_is_not_recomputed_and_names_are_separate(empty_cache):
    calls: list = []
    compute = _counting_compute(calls, delay=0)
    one = snapshots.shared("a", compute, seconds=60)
    assert snapshots.shared("a", compute, seconds=60).version == one.version
    other = snapshots.shared("b", compute, seconds=60)
    assert other.version != one.version and len(calls) == 2


def test_a_snapshot_is_stored_compressed_and_taken_without_a_synchronous_commit(empty_cache):
    """A rendered overview is ~120 KB of HTML: it is stored compressed, and the transaction that
    takes it does not wait for a WAL flush (the workers' commits queue behind each flush)."""
    from django.db import connection

    page = ("<tr><td>send_email</td><td>12,345</td></tr>" * 3000).encode()
    seen: list[str] = []

    def compute():
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])
        return page

    taken = snapshots.shared("big", compute, seconds=10)
    assert seen == ["off"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # SET LOCAL: only that transaction
    stored = caches[snapshots.CACHE].get("snapshot:" + hashlib.sha256(b"big").hexdigest())
    assert isinstance(stored, bytes) and len(stored) < len(page) // 10
    again = snapshots.shared("big", compute, seconds=10)
    assert (again.value, again.version, len(seen)) == (page, taken.version, 1)


def test_a_snapshot_stored_before_compression_is_still_read(empty_cache):
    old = snapshots.Snapshot({"ready": 3}, "v-old", time.time())
    key = "snapshot:" + hashlib.sha256(b"legacy").hexdigest()
    caches[snapshots.CACHE].set(key, old, timeout=60)
    got = snapshots.shared("legacy", lambda: {"ready": 4}, seconds=10)
    assert got == old


def _store(name: str, snapshot: snapshots.Snapshot) -> None:
    """As another process would: the compressed snapshot under its name in the shared cache."""
    import pickle
    import zlib

    key = "snapshot:" + hashlib.sha256(name.encode()).hexdigest()
    caches[snapshots.CACHE].set(key, zlib.compress(pickle.dumps(snapshot)), timeout=60)


def age_every_snapshot(seconds: float) -> None:
    """Make every stored snapshot `seconds` older, as if nobody had looked since (the counts and
    the renderings made of them alike), and drop this process's copies."""
    import pickle
    import zlib
    from dataclasses import replace

    from django.db import connection

    cache = caches[snapshots.CACHE]
    with connection.cursor() as cursor:
        cursor.execute("SELECT cache_key FROM console_snapshot_cache")
        stored = [row[0].split(":", 2)[2] for row in cursor.fetchall()]  # ":1:<key>"
    for key in stored:
        found = snapshots._get(cache, key) if key.startswith("snapshot:") else None
        if found is not None:
            older = replace(found, taken_at=found.taken_at - seconds)
            cache.set(key, zlib.compress(pickle.dumps(older)), timeout=60)
    snapshots.forget()


def test_within_the_interval_a_process_answers_from_its_own_copy_without_a_query(empty_cache):
    """Twenty polls a second in one process read the shared cache once per interval, not twenty
    times: the process keeps the snapshot it last served."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    calls: list = []
    first = snapshots.shared("polled", _counting_compute(calls, delay=0), seconds=60)
    _store("polled", snapshots.Snapshot({"ready": 99}, "v-other", time.time()))
    with CaptureQueriesContext(connection) as seen:
        again = snapshots.shared("polled", _counting_compute(calls, delay=0), seconds=60)
    assert again is first and seen.captured_queries == [] and len(calls) == 1


def test_past_the_interval_a_process_reads_what_another_process_took(empty_cache):
    calls: list = []
    compute = _counting_compute(calls, delay=0)
    snapshots.shared("polled", compute, seconds=0.3)
    time.sleep(0.35)  # this process's copy is now too old
    _store("polled", snapshots.Snapshot({"ready": 99}, "v-other", time.time()))
    got = snapshots.shared("polled", compute, seconds=0.3)
    assert (got.value, got.version, len(calls)) == ({"ready": 99}, "v-other", 1)


def test_forget_drops_the_process_copies_but_not_the_shared_cache(empty_cache):
    calls: list = []
    compute = _counting_compute(calls, delay=0)
    first = snapshots.shared("polled", compute, seconds=60)
    snapshots.forget()
    assert snapshots.shared("polled", compute, seconds=60).version == first.version
    assert len(calls) == 1


def _stale(name: str, snapshot: snapshots.Snapshot, age: float) -> None:
    """The shared copy of `name` as if taken `age` seconds ago; this process's copy dropped."""
    from dataclasses import replace

    _store(name, replace(snapshot, taken_at=time.time() - age))
    snapshots.forget()


def test_in_a_request_a_stale_snapshot_is_answered_at_once_and_renewed_after_the_response(
    empty_cache,
):
    """The first viewer after the interval does not wait for the count: the previous snapshot
    (at most REVALIDATE_FACTOR intervals old) answers, and the next is taken once the response
    is out (request_finished), for whoever asks next."""
    calls: list = []
    compute = _counting_compute(calls, delay=0)
    first = snapshots.shared("stale", compute, seconds=10)
    _stale("stale", first, age=15)
    snapshots.on_request_started(None)
    answered = snapshots.shared("stale", compute, seconds=10)
    assert answered.value == {"ready": 1} and len(calls) == 1  # nothing counted in the request
    snapshots.on_request_finished(None)
    snapshots.settle()
    assert len(calls) == 2  # renewed once the response was out, on a thread of its own
    snapshots.forget()
    assert snapshots.shared("stale", compute, seconds=10).value == {"ready": 2}
    assert len(calls) == 2  # the next request reads the renewed one from the shared cache


def test_too_stale_or_outside_a_request__the_snapshot_is_renewed_in_the_path(empty_cache):
    calls: list = []
    compute = _counting_compute(calls, delay=0)
    first = snapshots.shared("stale", compute, seconds=10)
    _stale("stale", first, age=15)
    assert snapshots.shared("stale", compute, seconds=10).value == {"ready": 2}  # a command
    _stale("stale", first, age=10 * snapshots.REVALIDATE_FACTOR + 1)
    snapshots.on_request_started(None)
    assert snapshots.shared("stale", compute, seconds=10).value == {"ready": 3}  # too old
    snapshots.on_request_finished(None)
    snapshots.settle()
    assert len(calls) == 3  # nothing left to renew after the response


def test_a_renewal_that_fails_is_logged_and_never_reaches_the_viewer(empty_cache, caplog):
    calls: list = []
    first = snapshots.shared("stale", _counting_compute(calls, delay=0), seconds=10)
    _stale("stale", first, age=15)

    def broken():
        raise RuntimeError("the database went away")

    snapshots.on_request_started(None)
    assert snapshots.shared("stale", broken, seconds=10).value == {"ready": 1}
    snapshots.on_request_finished(None)  # does not raise
    snapshots.settle()
    assert "Could not renew a shared snapshot" in caplog.text
    snapshots.forget()
    with pytest.raises(RuntimeError):  # still stale: the next request past the window asks
        _stale("stale", first, age=10 * snapshots.REVALIDATE_FACTOR + 1)
        snapshots.shared("stale", broken, seconds=10)


def test_prepare__nothing_usable_is_taken_right_after_the_response_and_found_by_the_next(
    empty_cache,
):
    """A page that shows itself without a part asks for it at once: prepare() answers None
    without computing, the part is taken once the response is out, and the next request (the
    page's load refresh, or a reload) finds it. Outside a request nothing is scheduled."""
    calls: list = []
    compute = _counting_compute(calls, delay=0)
    assert snapshots.prepare("part", compute, seconds=10) is None  # a command: no "after"
    snapshots.settle()
    assert calls == []
    snapshots.on_request_started(None)
    assert snapshots.prepare("part", compute, seconds=10) is None and calls == []
    snapshots.on_request_finished(None)
    snapshots.settle()
    assert len(calls) == 1
    snapshots.forget()
    assert snapshots.prepare("part", compute, seconds=10).value == {"ready": 1}
    assert len(calls) == 1


def test_a_process_runs_at_most_max_renewals_at_once(empty_cache, monkeypatch):
    """Many new parts at once (a script opening many filters without running the pages): a
    few are taken after the response, the rest by whoever asks next, in its own request."""
    monkeypatch.setattr(snapshots, "MAX_RENEWALS", 2)
    release = threading.Event()
    calls: list = []

    def slow():
        calls.append(1)
        release.wait(10)
        return {"ready": 1}

    snapshots.on_request_started(None)
    for n in range(5):
        assert snapshots.prepare(f"part-{n}", slow, seconds=10) is None
    snapshots.on_request_finished(None)
    time.sleep(0.2)
    assert len(calls) == 2  # two threads taking theirs; three left for later
    release.set()
    snapshots.settle()
    assert len(calls) == 2
