"""Page cost with replica reads on and off: the same pages, the same data, two servers.

    .venv/bin/python bench/replica.py --primary-url URL --replica-url URL [--runs 10]

The primary must hold a dataset (bench/build_dataset.py) and the replica must stream from it;
`python -m tests.replicadb up DBNAME` starts a throwaway pair (docs/scaling.md says how the
figures there were made). Each page is requested in-process through Django's test client, as in
bench/run.py, first with replica reads on, then off (REPLICA_READS), and the script checks which
server each mode really read (pg_is_in_recovery on the alias read_alias() chose). The table gives
the median and p95 server time per page and mode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py: Django set-up, the logged-in client, the probes

PAGES = [
    ("overview", "/"),
    ("jobs: all", "/jobs/"),
    ("jobs: failed", "/jobs/?state=failed"),
    ("jobs: scheduled", "/jobs/?state=scheduled"),
    ("failures", "/failures/"),
    ("queues", "/queues/"),
    ("tasks", "/tasks/"),
    ("workers", "/workers/"),
    ("crons", "/crons/"),
    ("metrics", "/metrics"),
]


def read_server(replica_reads: bool) -> str:
    """Switch replica reads, and say which kind of server the reads now go to."""
    from django.conf import settings
    from django.db import connections

    from worker_admin import replica

    settings.REPLICA_READS = replica_reads
    replica.forget()
    alias = replica.read_alias()
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        standby = cursor.fetchone()[0]
    return f"{alias} ({'standby' if standby else 'primary'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--primary-url", required=True)
    parser.add_argument("--replica-url", required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmups", type=int, default=2)
    args = parser.parse_args(argv)

    os.environ["DATABASE_REPLICA_URL"] = args.replica_url
    run.configure_django(args.primary_url)
    run.quiet_repeated_logs()
    client, _admin = run.logged_in_client()
    print(f"{'page':<18} {'mode':<28} {'median ms':>10} {'p95 ms':>8}  status")
    for name, path in PAGES:
        for replica_reads in (True, False):
            server = read_server(replica_reads)
            probe = run.page_probe(client, name, path)
            found = run.measure(probe, args.runs, args.warmups, queries=False)
            samples = sorted(found.samples_ms)
            p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
            median = statistics.median(samples)
            print(f"{name:<18} {server:<28} {median:>10.1f} {p95:>8.1f}  {found.status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
