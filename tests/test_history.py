"""History: snapshots recorded from PostgreSQL's table statistics, their deltas, resets, gaps,
retention, the advisory lock, the command, and the charts built from them."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.test import override_settings

from tests.dbconn import server_conninfo
from worker_admin.history import charts, recorder, retention, series, signals
from worker_admin.history.models import HOUR, MINUTE, RAW, HistorySnapshot
from worker_admin.history.reading import UNKNOWN, TableStats, deltas
from worker_admin.utils import WorkerUtils

SCHEMA = "graphile_worker"
TINY = 0.001  # an interval that is always due: the tests decide when snapshots are taken


def flush_stats() -> None:
    """Make this backend publish its pending table statistics now (PostgreSQL 15+), rather
    than within the ten seconds an idle backend may wait."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")


def record(**kwargs) -> HistorySnapshot:
    outcome = recorder.record_if_due(interval=kwargs.pop("interval", TINY), **kwargs)
    assert outcome.reason == "recorded", outcome
    return outcome.snapshot


def shift_back(snapshot: HistorySnapshot, seconds: float) -> None:
    HistorySnapshot.objects.filter(pk=snapshot.pk).update(
        taken_at=snapshot.taken_at - timedelta(seconds=seconds)
    )


# -- recording and deltas ----------------------------------------------------------------------


def test_record__first_snapshot_has_unknown_deltas_and_counts(worker_rows):
    WorkerUtils().add_raw_job("send_email", {"n": 1})
    first = record()
    assert (first.added, first.deleted, first.updated, first.failed) == (None,) * 4
    assert first.interval_seconds is None
    assert first.counts == {"ready": 1, "scheduled": 0, "locked": 0, "failed": 0, "retrying": 0}
    assert first.counts_exact is True
    assert first.by_task == {"send_email": 1}
    assert first.stat_inserted is not None and first.duration_ms > 0


def test_record__deltas_count_added_deleted_and_failed_jobs(worker_rows):
    utils = WorkerUtils()
    flush_stats()
    first = record()
    # A minute ago: this snapshot takes the counts, and with them (no opt-in index) the
    # failures since the previous counts round.
    shift_back(first, 61)
    added = [utils.add_raw_job("send_email", {"n": n}) for n in range(5)]
    utils.complete_jobs([added[0].id, added[1].id])
    with connection.cursor() as cursor:  # a failed attempt, as a worker's fail_job leaves it
        cursor.execute(
            "UPDATE graphile_worker._private_jobs SET attempts = 1, last_error = 'boom', "
            "updated_at = now() + interval '1 second' WHERE id = %s",
            [added[2].id],
        )
    flush_stats()
    second = record(interval=20)
    assert (second.added, second.deleted, second.failed) == (5, 2, 1)
    assert second.updated >= 1
    assert second.interval_seconds >= 61 and second.failed_interval_seconds >= 61
    flush_stats()
    third = record()
    assert third.counts is None  # counts are taken every HISTORY_COUNTS_INTERVAL_SECONDS
    assert third.failed is None  # and so are failures, without the opt-in index
    assert third.added == 0


def test_record__with_the_failing_index_failures_are_counted_every_snapshot(worker_rows):
    utils = WorkerUtils()
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE INDEX console_jobs_failing ON graphile_worker._private_jobs (id) "
            "WHERE attempts > 0 AND locked_at IS NULL"
        )
    try:
        record()
        job = utils.add_raw_job("send_email", {})
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE graphile_worker._private_jobs SET attempts = 1, last_error = 'x', "
                "updated_at = clock_timestamp() + interval '1 second' WHERE id = %s",
                [job.id],
            )
        second = record()
        assert second.counts is None and second.failed == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX graphile_worker.console_jobs_failing")


def test_record__counts_again_once_their_interval_has_passed(worker_rows):
    first = record()
    shift_back(first, 61)
    again = record()
    assert again.counts is not None


def test_deltas__a_counter_going_down_or_a_new_reset_time_is_unknown_never_negative():
    before = HistorySnapshot(stat_inserted=100, stat_deleted=50, stat_updated=70, stats_reset=None)
    assert deltas(before, TableStats(110, 55, 70, None), gap=False).added == 10
    assert deltas(before, TableStats(3, 0, 0, None), gap=False) == UNKNOWN
    assert deltas(before, TableStats(110, 55, 70, before.taken_at or 1), gap=False) == UNKNOWN
    assert deltas(before, TableStats(110, 55, 70, None), gap=True) == UNKNOWN
    assert deltas(None, TableStats(110, 55, 70, None), gap=False) == UNKNOWN


def test_record__a_statistics_reset_makes_the_interval_unknown(worker_rows):
    utils = WorkerUtils()
    for n in range(3):
        utils.add_raw_job("send_email", {"n": n})
    flush_stats()
    record()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_reset_single_table_counters('graphile_worker._private_jobs'::regclass)"
        )
    utils.add_raw_job("send_email", {"n": 9})
    flush_stats()
    after = record()
    assert (after.added, after.deleted, after.updated) == (None, None, None)
    flush_stats()
    assert record().added == 0  # and the next interval is known again


def test_record__after_a_pause_in_recording_the_interval_is_a_gap(worker_rows):
    first = record()
    shift_back(first, 600)
    after = record(interval=10)
    assert after.added is None and after.interval_seconds >= 600
    history = series.read(SCHEMA, series.RANGES["1h"])
    known = [b.added for b in history.buckets]
    assert known[-1] is None or known.count(None) > 40  # the ten minutes before hold nothing


def test_record__not_due_when_the_last_snapshot_is_recent(worker_rows):
    record()
    assert recorder.record_if_due(interval=60).reason == "not due"
    assert HistorySnapshot.objects.count() == 1


# -- one recorder at a time ------------------------------------------------------------------------


def test_lock__a_held_recorder_lock_makes_others_skip_without_waiting(worker_rows):
    with psycopg.connect(server_conninfo(), autocommit=False) as other:
        other.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))",
            [recorder.LOCK_NAMESPACE, SCHEMA],
        )
        assert recorder.record_if_due(interval=TINY).reason == "locked"
        other.rollback()
    assert recorder.record_if_due(interval=TINY).reason == "recorded"


def test_lock__eight_recorders_at_once_record_one_snapshot(worker_rows):
    start = threading.Barrier(8)
    reasons: list[str] = []

    def run() -> None:
        try:
            start.wait()
            reasons.append(recorder.record_if_due(interval=30).reason)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(reasons) <= {"locked", "not due", "recorded"} and len(reasons) == 8
    assert reasons.count("recorded") == 1
    assert HistorySnapshot.objects.count() == 1


def test_request_finished__records_when_due_and_only_then(console, settings):
    settings.HISTORY_RECORD_ON_REQUEST = True
    signals._next_look = 0.0
    console.get("/jobs/")
    console.get("/jobs/")  # within the interval: the process does not even look
    assert HistorySnapshot.objects.count() == 1
    settings.HISTORY_RECORD_ON_REQUEST = False
    signals._next_look = 0.0
    console.get("/jobs/")
    assert HistorySnapshot.objects.count() == 1


# -- retention -------------------------------------------------------------------------------------


def _raw(at, **fields) -> HistorySnapshot:
    defaults = {"schema": SCHEMA, "taken_at": at, "resolution": RAW, "interval_seconds": 10}
    return HistorySnapshot.objects.create(**{**defaults, **fields})


def test_retention__folds_old_rows_into_minutes_and_hours_and_drops_the_oldest(db):
    now = retention._now()
    minute = now - timedelta(days=2)
    minute = minute - timedelta(seconds=minute.timestamp() % 60)
    for i in range(6):  # one minute of 10-second snapshots, one of them with unknown deltas
        known = i != 3
        _raw(
            minute + timedelta(seconds=10 * i),
            added=2 if known else None,
            deleted=1 if known else None,
            counts={"ready": i} if i in (1, 4) else None,
            oldest_ready_seconds=float(i),
        )
    _raw(now - timedelta(days=10), added=7, resolution=MINUTE, interval_seconds=60)
    _raw(now - timedelta(days=100), added=1)
    recent = _raw(now - timedelta(hours=1), added=4)

    result = retention.apply(SCHEMA, now)

    # The 100-day-old row is folded twice on its way out.
    assert result == {"folded_to_minutes": 7, "folded_to_hours": 2, "dropped": 1}
    rows = list(HistorySnapshot.objects.order_by("taken_at"))
    hour_row, minute_row, kept = rows
    assert (hour_row.resolution, hour_row.added, hour_row.interval_seconds) == (HOUR, 7, 60)
    assert minute_row.resolution == MINUTE
    assert (minute_row.added, minute_row.deleted, minute_row.interval_seconds) == (10, 5, 50)
    assert minute_row.counts == {"ready": 4} and minute_row.oldest_ready_seconds == 5.0
    assert kept.pk == recent.pk
    assert retention.apply(SCHEMA, now) == {
        "folded_to_minutes": 0,
        "folded_to_hours": 0,
        "dropped": 0,
    }


# -- the command -----------------------------------------------------------------------------------


def test_command__record_history_once_records_then_skips_while_not_due(worker_rows, capsys):
    call_command("graphile_worker", "record-history", "--once")
    call_command("graphile_worker", "record-history", "--once")
    out = capsys.readouterr().out
    assert "Recorded 1 snapshot." in out
    assert "Recorded 0 snapshots (1 skipped" in out
    assert HistorySnapshot.objects.count() == 1


def test_command__record_history_refuses_a_bad_interval(db):
    with pytest.raises(CommandError, match="--interval must be positive"):
        call_command("graphile_worker", "record-history", "--interval", "0", "--once")


def test_command__record_history_runs_for_a_duration(worker_rows, capsys):
    call_command(
        "graphile_worker", "--json", "record-history", "--interval", "0.2", "--duration", "0.5"
    )
    assert HistorySnapshot.objects.count() >= 2


# -- charts ----------------------------------------------------------------------------------------


def test_trace__a_gap_breaks_the_line_and_a_lone_value_is_a_dot():
    line = charts._trace("added", "Added", [1.0, 2.0, None, 3.0, None, 4.0, 5.0], top=10)
    assert len(line.paths) == 2 and len(line.dots) == 1
    assert charts.nice_top(0) == 1 and charts.nice_top(7) == 10 and charts.nice_top(130) == 200


def _seed_last_hour(with_gap: bool = True) -> None:
    now = retention._now()
    for minutes_ago in range(50, 0, -1):
        if with_gap and 20 <= minutes_ago <= 30:
            continue  # the recorder was stopped
        _raw(
            now - timedelta(minutes=minutes_ago),
            interval_seconds=60,
            added=120,
            deleted=60,
            failed=6,
            failed_interval_seconds=60,
            counts={"ready": 10, "scheduled": 2, "locked": 1, "failed": 0, "retrying": 0},
            counts_exact=True,
            by_task={"send_email": 13},
            by_queue={"mail": 4},
            oldest_ready_seconds=90.0,
        )


def test_series__rates_per_minute_and_gaps_as_none(db):
    _seed_last_hour()
    history = series.read(SCHEMA, series.RANGES["1h"])
    added = [b.added for b in history.buckets]
    assert 120.0 in added and None in added
    assert all(value in (None, 120.0) for value in added)
    gap = added[-30:-20]
    assert gap.count(None) >= 9  # ten minutes without a snapshot are not zero


def test_overview__charts_render_with_tables_and_broken_lines(login_as, jobs):
    _seed_last_hour()
    jobs.ready("send_email")
    client = login_as("viewer", "watcher")
    page = client.get("/").content.decode()
    assert page.count('<svg class="chart"') == 3
    assert page.count('<table class="data compact">') == 3
    assert "Throughput" in page and "Backlog by state" in page and "Oldest ready job" in page
    throughput = page.split('id="chart-throughput"')[1].split("</svg>")[0]
    assert throughput.count('<path d="M') == 6  # 3 lines, each broken by the gap
    assert "—" in page.split('id="chart-throughput"')[1].split("</table>")[0]


@pytest.mark.parametrize("range_key", ["1h", "24h", "7d", "bogus", ""])
def test_history_pages__every_range_renders_for_a_viewer(login_as, range_key):
    _seed_last_hour(with_gap=False)
    client = login_as("viewer", "watcher")
    for url in ("/history/", "/history/charts/", "/"):
        response = client.get(url, {"range": range_key})
        assert response.status_code == 200, url
        expected = range_key if range_key in series.RANGES else "1h"
        assert f'?range={expected}" aria-current="page"' in response.content.decode()


def test_history_page__lists_snapshots_and_says_when_nothing_is_recorded(console):
    assert "Nothing recorded in the last 1 hour" in console.get("/history/").content.decode()
    _seed_last_hour(with_gap=False)
    page = console.get("/history/").content.decode()
    assert "Latest snapshots" in page and "120" in page


def test_history_charts__write_methods_are_refused(console):
    assert console.post("/history/").status_code == 405
    assert console.post("/history/charts/").status_code == 405


def test_sparklines__tasks_and_queues_rows_get_one(console, jobs):
    _seed_last_hour(with_gap=False)
    jobs.ready("send_email", queue_name="mail")
    tasks = console.get("/tasks/").content.decode()
    queues = console.get("/queues/").content.decode()
    assert tasks.count('class="sparkline"') == 1
    assert queues.count('class="sparkline"') == 1


@override_settings(HISTORY_TOP_GROUPS=1)
def test_record__keeps_only_the_largest_tasks_and_queues(worker_rows):
    utils = WorkerUtils()
    for _ in range(3):
        utils.add_raw_job("big", {})
    utils.add_raw_job("small", {})
    assert record().by_task == {"big": 3}


def test_failure_count__puts_the_usual_statement_timeout_back(worker_rows):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        usual = cursor.fetchone()[0]
        record()
        shift_back(HistorySnapshot.objects.get(), 61)
        assert record(interval=20).failed == 0  # a counts round: the failures were counted
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == usual


def test_history_charts__link_to_the_history_page_except_on_it(console):
    assert "History page</a>" in console.get("/").content.decode()
    assert "History page</a>" not in console.get("/history/").content.decode()
    swapped = console.get(
        "/history/charts/?range=24h",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="http://testserver/history/",
    )
    assert "History page</a>" not in swapped.content.decode()
