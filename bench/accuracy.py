"""Estimate accuracy: what the overview shows against the true counts, per state, task and queue.

    DATABASE_URL=postgresql://… .venv/bin/python bench/accuracy.py [--draws 20] [--all]
    .venv/bin/python bench/accuracy.py --database-url postgresql://…/gw_bench_http_periodic --all

Reads only. Each draw is one fresh random sample, as an overview refresh takes; the true counts
come from one exact grouped pass over every job (seconds at 10M). Prints, for the first draw,
each count as shown with its 95 % interval next to the truth, and over all draws how often the
interval held the truth (about 95 % is right; far less means the intervals lie), overall and
per kind (state, task, queue). On the periodic dataset (build_dataset.py --periodic) a sample
that picks ids with a bias shows here as intervals that miss. --output writes it all as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAMES = ("total", "ready", "scheduled", "locked", "failed", "retrying")


def _setup(database_url: str | None) -> None:
    if database_url:
        os.environ["DATABASE_URL"] = database_url
        os.environ.pop("CONSOLE_DATABASE_URL", None)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: env DATABASE_URL")
    parser.add_argument("--draws", type=int, default=20, help="fresh samples to score")
    parser.add_argument("--exact-row-limit", type=int, help="force sampling below this size")
    parser.add_argument("--all", action="store_true", help="print every item, not only states")
    parser.add_argument("--windows", type=int, help="blocks per sample (default: the console's)")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    _setup(args.database_url)
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
    score = {kind: [0, 0] for kind in ("state", "task", "queue", "sampled")}
    by_method: dict[str, int] = {}
    first: list[dict] = []
    for draw in range(args.draws):
        result = stats.queue_stats(alias)
        if result.exact:
            print("The table is below the exact-count limit: pass --exact-row-limit.")
            return 2
        for key, value in _items(result).items():
            true = truth.get(key, 0)
            inside = value.low <= true <= (true if value.high is None else value.high)
            if true:
                score[key[0]][0] += inside
                score[key[0]][1] += 1
                if value.method == "sampled":
                    score["sampled"][0] += inside
                    score["sampled"][1] += 1
            by_method[value.method] = by_method.get(value.method, 0) + 1
            if draw == 0:
                first.append(_row(key, value, true, inside))
    for row in first:
        if args.all or row["kind"] == "state":
            high = "∞" if row["high"] is None else f"{row['high']:,}"
            print(
                f"{row['kind']:5} {row['name'][:24]:24} {row['count']:9} shown "
                f"{row['shown']:>22} [{row['low']:,} – {high}]  true {row['true']:,}  "
                f"{'inside' if row['inside'] else 'OUTSIDE'}"
            )
    return _summary(args, result, score, by_method, first)


def _row(key: tuple[str, str, str], value, true: int, inside: bool) -> dict:
    return {
        "kind": key[0],
        "name": key[1],
        "count": key[2],
        "shown": value.display,
        "method": value.method,
        "low": value.low,
        "high": value.high,
        "true": true,
        "inside": inside,
    }


def _summary(args, result, score: dict, by_method: dict, first: list[dict]) -> int:
    def rate(kind: str) -> str:
        held, total = score[kind]
        return f"{held}/{total} = {held / max(total, 1):.1%}"

    held = sum(score[k][0] for k in ("state", "task", "queue"))
    total = sum(score[k][1] for k in ("state", "task", "queue"))
    print(f"\n{args.draws} draws, sample {result.sampled_fraction:.2%} of the id range")
    print(f"intervals holding a non-zero true count: {held}/{total} = {held / max(total, 1):.1%}")
    print("  by kind: " + ", ".join(f"{k} {rate(k)}" for k in ("state", "task", "queue")))
    print(f"of those shown as ~N ± %: {rate('sampled')}")
    print("shown as:", ", ".join(f"{m} {n}" for m, n in sorted(by_method.items())))
    if args.output:
        payload = {
            "draws": args.draws,
            "sampled_fraction": result.sampled_fraction,
            "held": held,
            "total": total,
            "by_kind": {k: {"held": v[0], "total": v[1]} for k, v in score.items()},
            "shown_as": by_method,
            "first_draw": first,
        }
        args.output.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
