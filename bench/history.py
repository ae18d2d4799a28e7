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
    from django.db import connection

    from worker_admin import stats
    from worker_admin.history import page, recorder, series
    from worker_admin.history.models import HOUR, MINUTE, HistorySnapshot

    call_command("migrate", verbosity=0)
    if options.exact_row_limit:
        stats.EXACT_ROW_LIMIT = options.exact_row_limit
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
        for run in range(options.runs + 1):
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
    for kind, rows in kinds.items():
        sql = statistics.median(r[0] for r in rows)
        whole = statistics.median(r[2] for r in rows)
        print(
            f"{kind:7} snapshot: {len(rows)} runs, median SQL {sql:.1f} ms in {rows[0][1]} "
            f"statements, whole record_if_due {whole:.1f} ms"
        )

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
