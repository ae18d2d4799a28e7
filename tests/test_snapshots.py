"""Shared snapshots (worker_admin/snapshots.py): however many requests ask at once, from however
many processes (threads with their own database connections here; tests/test_multiprocess.py
has two real servers), one computes and the others get its result."""

from __future__ import annotations

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
