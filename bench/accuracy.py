"""Estimate accuracy: what the overview shows against the true counts, per state, task and queue.

    DATABASE_URL=postgresql://… .venv/bin/python bench/accuracy.py [--draws 20] [--all]

Reads only. Each draw is one fresh random sample, as an overview refresh takes; the true counts
come from one exact grouped pass over every job (seconds at 10M). Prints, for the first draw,
each count as shown with its 95 % interval next to the truth, and over all draws how often the
interval held the truth (about 95 % is right; far less means the intervals lie).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAMES = ("total", "ready", "scheduled", "locked", "failed", "retrying")


def _setup() -> None:
    if not os.environ.get("DATABASE_URL"):
        sys.exit("Set DATABASE_URL to the Graphile Worker database to measure.")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("SECRET_KEY", "bench-accuracy-only")
    os.environ["DEBUG"] = "0"
    import django

    django.setup()


def _items(result) -> dict[tuple[str, str, str], object]:
    """(kind, name, count) → Estimate, for the totals and every task and queue."""
    items = {("state", "all", name): result.counts.estimate(name) for name in NAMES}
    for kind, groups in (("task", result.by_task), ("queue", result.by_queue)):
        for group in groups:
            for name in NAMES:
                items[(kind, str(group.name), name)] = group.counts.estimate(name)
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20, help="fresh samples to score")
    parser.add_argument("--exact-row-limit", type=int, help="force sampling below this size")
    parser.add_argument("--all", action="store_true", help="print every item, not only states")
    parser.add_argument("--windows", type=int, help="blocks per sample (default: the console's)")
    args = parser.parse_args()
    _setup()
    from django.conf import settings

    from worker_admin import stats
    from worker_admin.models import Job

    alias = settings.WORKER_DATABASE
    if args.exact_row_limit is not None:
        stats.EXACT_ROW_LIMIT = args.exact_row_limit
    if args.windows is not None:  # a smaller share of a small table, as at 10M
        width = stats.SAMPLE_ROWS // stats.SAMPLE_WINDOWS
        stats.SAMPLE_WINDOWS, stats.SAMPLE_ROWS = args.windows, args.windows * width
    stats.SAMPLE_REUSE_SECONDS = -1  # every draw a fresh sample
    truth = {
        k: e.value
        for k, e in _items(stats._exact_queue_stats(Job.objects.using(alias), alias)).items()
    }
    held = total = sampled_held = sampled_total = 0
    by_method: dict[str, int] = {}
    for draw in range(args.draws):
        result = stats.queue_stats(alias)
        if result.exact:
            sys.exit("The table is below the exact-count limit: pass --exact-row-limit.")
        shown = _items(result)
        for key, value in shown.items():
            true = truth.get(key, 0)
            inside = value.low <= true <= (true if value.high is None else value.high)
            if true:
                total += 1
                held += inside
                if value.method == "sampled":
                    sampled_total += 1
                    sampled_held += inside
            by_method[value.method] = by_method.get(value.method, 0) + 1
            if draw == 0 and (args.all or key[0] == "state"):
                high = "∞" if value.high is None else f"{value.high:,}"
                mark = "" if inside else "   <-- outside"
                print(
                    f"{key[0]:5} {key[1][:24]:24} {key[2]:9} shown {value.display:>22} "
                    f"[{value.low:,} – {high}]  true {true:,}{mark}"
                )
    print(f"\n{args.draws} draws, sample {result.sampled_fraction:.2%} of the id range")
    print(f"intervals holding a non-zero true count: {held}/{total} = {held / max(total, 1):.1%}")
    print(
        f"of those shown as ~N ± %: {sampled_held}/{sampled_total} = "
        f"{sampled_held / max(sampled_total, 1):.1%}"
    )
    print("shown as:", ", ".join(f"{m} {n}" for m, n in sorted(by_method.items())))


if __name__ == "__main__":
    main()
