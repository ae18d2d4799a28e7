"""Mutation check for tests/test_differential.py: it must fail when one condition changes.

Applies one mutant at a time to worker_admin/sql/core.sql, runs the differential test against
npm 0.18.0 (300 examples, no shrinking), records whether a difference was found, and restores the
file (also on Ctrl-C or SIGTERM). Not collected by pytest; run it by hand, never beside other
tests that install core.sql:

    DATABASE_URL=postgresql://... .venv/bin/python tests/differential_mutants.py [N ...]

A mutant counts as caught only when the test fails with "... differs after", not on a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "worker_admin" / "sql" / "core.sql"
PYTEST = [sys.executable, "-m", "pytest", "tests/test_differential.py", "-x", "-q"]

# (what it changes, the exact text in core.sql, its replacement)
MUTANTS = [
    (
        "add_job preserve_run_at: drop the attempts = 0 condition",
        "when add_job.job_key_mode = 'preserve_run_at' and j.attempts = 0 then j.run_at",
        "when add_job.job_key_mode = 'preserve_run_at' then j.run_at",
    ),
    (
        "add_jobs preserve_run_at: drop the attempts = 0 condition",
        "when add_jobs.job_key_preserve_run_at and j.attempts = 0 then j.run_at",
        "when add_jobs.job_key_preserve_run_at then j.run_at",
    ),
    (
        "complete_jobs: 4 hours -> 3 hours",
        (
            "where j.id = any (complete_jobs.job_ids)\n"
            "      and (j.locked_at is null or j.locked_at < now() - interval '4 hours')"
        ),
        (
            "where j.id = any (complete_jobs.job_ids)\n"
            "      and (j.locked_at is null or j.locked_at < now() - interval '3 hours')"
        ),
    ),
    (
        "complete_jobs: < -> <= at the 4-hour boundary",
        (
            "where j.id = any (complete_jobs.job_ids)\n"
            "      and (j.locked_at is null or j.locked_at < now() - interval '4 hours')"
        ),
        (
            "where j.id = any (complete_jobs.job_ids)\n"
            "      and (j.locked_at is null or j.locked_at <= now() - interval '4 hours')"
        ),
    ),
    (
        "permanently_fail_jobs: 4 hours -> 5 hours",
        (
            "where j.id = any (permanently_fail_jobs.job_ids)\n"
            "      and (j.locked_at is null or j.locked_at < now() - interval '4 hours')"
        ),
        (
            "where j.id = any (permanently_fail_jobs.job_ids)\n"
            "      and (j.locked_at is null or j.locked_at < now() - interval '5 hours')"
        ),
    ),
    (
        "reschedule_jobs: 4 hours -> 3 hours",
        (
            "where j.id = any (reschedule_jobs.job_ids)\n"
            "      and (j.locked_at is null or j.locked_at < now() - interval '4 hours')"
        ),
        (
            "where j.id = any (reschedule_jobs.job_ids)\n"
            "      and (j.locked_at is null or j.locked_at < now() - interval '3 hours')"
        ),
    ),
    (
        "remove_job: >= -> > at the 4-hour boundary",
        "and j.locked_at >= now() - interval '4 hours'",
        "and j.locked_at > now() - interval '4 hours'",
    ),
    (
        "permanently_fail_jobs: default message",
        "coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed')",
        "coalesce(permanently_fail_jobs.error_message, 'Manually failed')",
    ),
    (
        "add_job: a failed keyed job keeps its key (detach only locked jobs)",
        ("      where j.key = add_job.job_key\n        and not j.is_available;"),
        ("      where j.key = add_job.job_key\n        and j.locked_at is not null;"),
    ),
    (
        "add_jobs: existing task names draw an identity value again (no NOT EXISTS)",
        (
            "      from unnest(add_jobs.specs) as s\n"
            "      where not exists (\n"
            "        select from {{schema}}._private_tasks as t where t.identifier = s.identifier\n"
            "      )\n"
        ),
        "      from unnest(add_jobs.specs) as s\n",
    ),
    (
        "add_job: existing queue names draw an identity value again",
        (
            "        where not exists (\n"
            "          select from {{schema}}._private_job_queues as q\n"
            "            where q.queue_name = add_job.queue_name\n"
            "        )\n"
        ),
        "",
    ),
    (
        "force_unlock_workers: queues stay locked",
        (
            "  update {{schema}}._private_job_queues as q\n"
            "    set locked_at = null,\n"
            "        locked_by = null\n"
            "    where q.locked_by = any (force_unlock_workers.worker_ids);\n"
        ),
        "  select;\n",
    ),
    (
        "add_job: unsafe_dedupe notifies for an existing job too",
        ("    if v_job.revision = 0 then\n      perform pg_notify"),
        ("    if v_job.revision >= 0 then\n      perform pg_notify"),
    ),
    (
        "add_jobs: replace keeps the old attempts",
        ("      revision = j.revision + 1,\n      attempts = 0,"),
        ("      revision = j.revision + 1,\n      attempts = j.attempts,"),
    ),
    (
        "add_job: array payloads are not concatenated",
        (
            "          when json_typeof(j.payload) = 'array' and "
            "json_typeof(excluded.payload) = 'array'\n"
            "            then"
        ),
        ("          when false\n            then"),
    ),
    (
        "reschedule_jobs: a null run_at means now",
        "set run_at = coalesce(reschedule_jobs.run_at, j.run_at),",
        "set run_at = coalesce(reschedule_jobs.run_at, now()),",
    ),
]


def main(only: list[int]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    original = CORE.read_text()
    env = {**os.environ, "DIFFERENTIAL_EXAMPLES": "300", "DIFFERENTIAL_SHRINK": "0"}
    survived = 0
    try:
        for n, (name, old, new) in enumerate(MUTANTS):
            if only and n not in only:
                continue
            if original.count(old) != 1:
                print(f"[{n}] NOT APPLICABLE (text not found once): {name}")
                survived += 1
                continue
            CORE.write_text(original.replace(old, new))
            started = time.monotonic()
            result = subprocess.run(
                [*PYTEST, "-k", "0_18_0 and not older"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            caught = result.returncode != 0 and "differs after" in result.stdout
            survived += not caught
            verdict = "CAUGHT" if caught else "SURVIVED"
            print(f"[{n}] {verdict} in {time.monotonic() - started:.0f}s: {name}", flush=True)
    finally:
        CORE.write_text(original)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main([int(arg) for arg in sys.argv[1:]]))
