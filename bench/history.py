"""What history costs: one snapshot's SQL time, and the charts' reads over a full retention.

    DATABASE_URL=postgresql://…/gw_bench SECRET_KEY=x .venv/bin/python bench/history.py
    … bench/history.py --exact-row-limit 1000    # force the large-table (sampled) path

On a database built by bench/build_dataset.py (it migrates the console's tables there). The
snapshot rows it records and seeds are deleted at the end. docs/history.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--exact-row-limit", type=int)
    options = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    from worker_admin import stats
    from worker_admin.history import page, series
    from worker_admin.history.models import HOUR, MINUTE, HistorySnapshot

    call_command("migrate", verbosity=0)
    if options.exact_row_limit:
        stats.EXACT_ROW_LIMIT = options.exact_row_limit
    time_snapshots(options.runs)
    HistorySnapshot.objects.all().delete()
    _seed_full_retention(HistorySnapshot, MINUTE, HOUR)
    print(f"charts over {HistorySnapshot.objects.count():,} snapshot rows (full retention):")
    for key in series.RANGES:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            page.charts_context(key)
            runs.append((time.perf_counter() - started) * 1000)
        print(f"  {key:4} charts: median {statistics.median(runs):.1f} ms")
    started = time.perf_counter()
    series.sparklines("task")
    print(f"  task sparklines (24 h): {(time.perf_counter() - started) * 1000:.1f} ms")
    HistorySnapshot.objects.all().delete()


def time_snapshots(runs: int) -> dict[str, dict[str, float]]:
    """Record `runs` snapshots back to back (every fifth a counts round); print and return the
    median SQL time and whole record_if_due time of each kind. Deletes every snapshot first."""
    from django.db import connection

    from worker_admin import stats
    from worker_admin.history import recorder
    from worker_admin.history.models import HistorySnapshot

    HistorySnapshot.objects.all().delete()
    timings: list[float] = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.append((time.perf_counter() - started) * 1000)

    kinds: dict[str, list[tuple[float, int, float]]] = {"plain": [], "counts": []}
    with connection.execute_wrapper(timed):
        for run in range(runs + 1):
            timings.clear()
            started = time.perf_counter()
            snapshot = recorder.record_if_due(interval=0.001).snapshot
            whole = (time.perf_counter() - started) * 1000
            if run:  # the first one warms the caches
                kind = "counts" if snapshot.counts is not None else "plain"
                kinds[kind].append((sum(timings), len(timings), whole))
            if run % 5 == 0:  # every fifth snapshot is a counts round
                HistorySnapshot.objects.filter(counts__isnull=False).update(
                    taken_at=snapshot.taken_at - timedelta(minutes=5)
                )
    print(f"large-table path: {stats.is_large('default')}")
    found = {}
    for kind, rows in kinds.items():
        if not rows:
            continue
        sql = statistics.median(r[0] for r in rows)
        whole = statistics.median(r[2] for r in rows)
        print(
            f"{kind:7} snapshot: {len(rows)} runs, median SQL {sql:.1f} ms in {rows[0][1]} "
            f"statements, whole record_if_due {whole:.1f} ms"
        )
        found[kind] = {"runs": len(rows), "sql_ms": round(sql, 2), "whole_ms": round(whole, 2)}
    return found


def bench_mode(args, client) -> dict:
    """`bench/run.py --history`: one snapshot at the bench scale, and the overview page with
    its history charts and without them (HISTORY_CHARTS_ON_OVERVIEW), over a full retention's
    worth of snapshot rows; recording on request is off while the pages are timed, so that
    no timed request takes a snapshot."""
    import run
    from django.test import override_settings

    from worker_admin.history.models import HOUR, MINUTE, HistorySnapshot

    print("history snapshots …", flush=True)
    snapshots = time_snapshots(max(args.runs, 10))
    HistorySnapshot.objects.all().delete()
    _seed_full_retention(HistorySnapshot, MINUTE, HOUR)
    measurements = []
    try:
        for charts in (True, False):
            name = f"overview {'with' if charts else 'without'} charts"
            print(f"  {name} …", flush=True)
            with override_settings(
                HISTORY_CHARTS_ON_OVERVIEW=charts, HISTORY_RECORD_ON_REQUEST=False
            ):
                probe = run.page_probe(client, name, "/")
                measurements.append(run.measure(probe, args.runs, args.warmups))
    finally:
        HistorySnapshot.objects.all().delete()
    print()
    run.print_table(measurements)
    return {
        "mode": "history",
        "snapshot": snapshots,
        "history_rows_seeded": "full retention (about 17,000 rows)",
        "pages": [m.as_json() for m in measurements],
    }


def _seed_full_retention(model, minute: int, hour: int) -> None:
    from worker_admin.history.retention import _now

    now = _now()
    counts = {"ready": 500, "scheduled": 100, "locked": 8, "failed": 20, "retrying": 5}
    groups = {f"task_{n}": 100 + n for n in range(20)}

    def row(ago: timedelta, resolution: int, seconds: int, with_counts: bool):
        return model(
            schema="graphile_worker",
            taken_at=now - ago,
            resolution=resolution,
            interval_seconds=seconds,
            added=seconds * 3,
            deleted=seconds * 3,
            failed=1,
            failed_interval_seconds=seconds,
            counts=counts if with_counts else None,
            counts_exact=True,
            by_task=groups if with_counts else None,
            by_queue=groups if with_counts else None,
            oldest_ready_seconds=30.0,
        )

    rows = [row(timedelta(seconds=10 * i), 0, 10, i % 6 == 0) for i in range(8640)]
    rows += [row(timedelta(days=1, minutes=i), minute, 60, True) for i in range(6 * 1440)]
    rows += [row(timedelta(days=7, hours=i), hour, 3600, True) for i in range(83 * 24)]
    model.objects.bulk_create(rows, batch_size=2000)


if __name__ == "__main__":
    main()
