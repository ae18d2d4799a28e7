"""History against real Node graphile-worker 0.18.0 workers: a burst of jobs run while the
console records a snapshot every second; the completed jobs it recorded (rows deleted from
`_private_jobs`, read from PostgreSQL's table statistics) match the jobs the workers ran within
5 %, and stopping the recorder leaves a gap in the chart's series, not zeros."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections

from tests.nodejs import ensure_graphile_worker
from tests.test_interop import (
    node_database_url,
    recorded_runs,
    running_node_worker,
    wait_for,
)
from worker_admin.history import recorder, series
from worker_admin.history.models import HistorySnapshot
from worker_admin.models import Job
from worker_admin.utils import RawJobSpec, WorkerUtils

pytestmark = [pytest.mark.node, pytest.mark.embedded]

BURST = 1500
INTERVAL = 1.0
SCHEMA = "graphile_worker"


class Recorder(threading.Thread):
    """The recorder loop, as `record-history --interval 1` runs it, in a thread of the test."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                recorder.record_if_due(interval=INTERVAL)
                self.halt.wait(INTERVAL)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        assert not self.errors, self.errors


def snapshots_after(moment) -> list[HistorySnapshot]:
    return list(HistorySnapshot.objects.filter(taken_at__gt=moment).order_by("taken_at"))


def test_history__records_a_node_burst_within_five_percent_and_a_gap_when_stopped(
    worker_rows, tmp_path: Path
) -> None:
    ensure_graphile_worker()  # skips without Node, installs graphile-worker 0.18.0 if needed
    utils = WorkerUtils()
    (tmp_path / "none.log").write_text("(no process)")
    rec = Recorder()
    rec.start()
    try:
        baseline = wait_for(
            lambda: HistorySnapshot.objects.filter(added__isnull=False).last(),
            timeout=30,
            what="a first snapshot with known deltas",
            process=_no_process(),
            log=tmp_path / "none.log",
        )
        for start in range(0, BURST, 500):
            utils.add_raw_jobs([RawJobSpec("record", {"n": n}) for n in range(start, start + 500)])

        output, log = tmp_path / "runs.jsonl", tmp_path / "worker.log"
        args = ["--jobs", "4", "--poll-interval", "500"]
        with running_node_worker(node_database_url(), output, log, args) as worker:
            wait_for(
                lambda: not Job.objects.filter(task__identifier="record").exists(),
                timeout=180,
                what=f"the Node worker to run {BURST} jobs",
                process=worker,
                log=log,
            )
        completed = len(recorded_runs(output))
        assert completed == BURST
        # The worker has exited, so its backends have published their statistics: a few more
        # snapshots see the last of them.
        stopped_at = HistorySnapshot.objects.last().taken_at
        wait_for(
            lambda: len(snapshots_after(stopped_at)) >= 3,
            timeout=30,
            what="three snapshots after the burst",
            process=_no_process(),
            log=log,
        )
    finally:
        rec.stop()

    during = snapshots_after(baseline.taken_at)
    assert all(s.deleted is not None for s in during), "no unknown interval during the burst"
    recorded_completed = sum(s.deleted for s in during)
    recorded_added = sum(s.added for s in during)
    assert abs(recorded_completed - completed) <= 0.05 * completed, recorded_completed
    assert abs(recorded_added - BURST) <= 0.05 * BURST, recorded_added

    # The same figure as the chart reads it: per-minute rates times the time they cover. A
    # bucket's rate is spread over every snapshot in it, the baseline's too when they share a
    # bucket (a fast server runs the whole burst within one interval), so all of them count.
    fine = series.Range("test", "5 minutes", timedelta(minutes=5), timedelta(seconds=2))
    history = series.read(SCHEMA, fine)
    recorded = snapshots_after(during[0].taken_at - timedelta(seconds=5))
    charted = sum(
        (b.completed or 0) * _covered(b, recorded) / 60 for b in history.buckets if b.completed
    )
    assert abs(charted - completed) <= 0.05 * completed, charted

    # Stop recording for longer than the gap limit, then record again: the interval after the
    # pause is unknown, and the buckets of the pause are gaps (None), never zeros.
    last_before = HistorySnapshot.objects.last()
    pause = recorder.gap_limit(INTERVAL).total_seconds() + 2
    threading.Event().wait(pause)
    after = recorder.record_if_due(interval=INTERVAL).snapshot
    assert after is not None and after.deleted is None and after.added is None
    history = series.read(SCHEMA, fine, end=after.taken_at)
    starts = [b.start for b in history.buckets]
    pause_buckets = [
        b
        for b in history.buckets
        if last_before.taken_at + timedelta(seconds=2)
        < b.start
        < after.taken_at - timedelta(seconds=2)
    ]
    assert len(pause_buckets) >= 3, starts
    assert all(b.completed is None and b.added is None for b in pause_buckets)


def _covered(bucket, snapshots) -> float:
    """Seconds of known deltas the snapshots in this bucket cover."""
    end = bucket.start + timedelta(seconds=2)
    return sum(
        s.interval_seconds
        for s in snapshots
        if bucket.start <= s.taken_at < end and s.deleted is not None
    )


class _no_process:
    """wait_for watches a process; the recorder has none of its own."""

    returncode = None

    def poll(self):
        return None
