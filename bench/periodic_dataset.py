"""A periodic dataset: jobs whose task, queue, state and run_at follow fixed patterns of ids.

    .venv/bin/python bench/build_dataset.py --periodic --jobs 100000 --database gw_bench_http_p
    .venv/bin/python bench/build_dataset.py --periodic --npm …   # the schema from npm 0.18.0

The random dataset (build_dataset.py) draws every attribute independently per job, so a sample
that is biased in how it picks ids (aligned blocks, every k-th id, the newest ids only) still
looks right on it. Here each attribute repeats with a period over the job number n (= the id
order), so such a sample is exposed: bench/accuracy.py compares what the console shows against
the exact counts, with the stated intervals.

- task: round robin over TASKS (period 7): job n runs TASKS[n mod 7];
- queue: batches of QUEUE_BATCH (100) consecutive jobs share a queue, round robin over QUEUES
  (10) queues and one batch without a queue (period 100 × 11 = 1,100);
- state: by position in a block of STATE_PERIOD (1,000) consecutive jobs, in runs: 10 locked,
  40 failed, 100 retrying, 300 scheduled, 550 ready (so a 100-id sample block sees one or two
  states, never the mix);
- run_at: ready jobs became due (n mod 1000) seconds before the build; scheduled ones are due
  1 hour + (n mod 100) minutes after it, retries 2 hours + (n mod 60) minutes after it.

The state mix holds for an hour after the build. With --npm the worker schema is installed by
the real graphile-worker 0.18.0 CLI (`--schema-only`, the package pinned in tests/node) rather
than by the console's installer, so that the console's reads are checked on the real schema.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC

import build_dataset
import psycopg
from build_dataset import BuildOptions, BuildReport

from worker_admin.installer import migrate, quote_schema

TASKS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]  # period 7
QUEUES = 10
QUEUE_BATCH = 100
STATE_PERIOD = 1000
# (state, jobs) in the order they occupy each block of STATE_PERIOD ids
STATE_RUNS = [("locked", 10), ("failed", 40), ("retrying", 100), ("scheduled", 300), ("ready", 550)]
MAX_ATTEMPTS = 5

JOBS_SQL = """
insert into {schema}._private_jobs (
  job_queue_id, task_id, payload, run_at, attempts, max_attempts, last_error, locked_at,
  locked_by, created_at, updated_at)
select queue_id, task_id, json_build_object('n', n), run_at, attempts, {max_attempts},
       last_error, locked_at, locked_by, created_at, created_at
from (
  select n, p.state,
         (%(task_ids)s::int[])[1 + mod(n, 7)] as task_id,
         case when mod(n / {batch}, {queues} + 1) = {queues} then null
              else (%(queue_ids)s::int[])[1 + mod(n / {batch}, {queues} + 1)] end as queue_id,
         case p.state
           when 'ready' then %(anchor)s - interval '1 second' * mod(n, 1000)
           when 'scheduled' then %(anchor)s + interval '1 hour' + interval '1 minute' * mod(n, 100)
           when 'retrying' then %(anchor)s + interval '2 hours' + interval '1 minute' * mod(n, 60)
           else %(anchor)s - interval '1 minute' * mod(n, 60)
         end as run_at,
         case p.state when 'failed' then {max_attempts}
                      when 'retrying' then 1 + mod(n, {max_attempts} - 1)
                      else 0 end as attempts,
         case when p.state in ('failed', 'retrying')
              then format('Error: periodic failure %%s', mod(n, 13)) end as last_error,
         case when p.state = 'locked'
              then %(anchor)s - interval '1 minute' * mod(n, 60) end as locked_at,
         case when p.state = 'locked'
              then 'graphile_worker_' || substr(md5('periodic-' || mod(n, 20)), 1, 16)
         end as locked_by,
         %(anchor)s - interval '1 day' + interval '1 second' * (n / 100.0) as created_at
    from generate_series(%(first)s::bigint, %(last)s::bigint) as n
    join (select state, lo, hi from unnest(%(states)s::text[], %(lows)s::int[], %(highs)s::int[])
            as s(state, lo, hi)) as p
      on mod(n, {period}) >= p.lo and mod(n, {period}) < p.hi
) as j
"""


def state_bounds() -> tuple[list[str], list[int], list[int]]:
    """STATE_RUNS as [lo, hi) positions within a block."""
    states, lows, highs, at = [], [], [], 0
    for state, count in STATE_RUNS:
        states.append(state)
        lows.append(at)
        highs.append(at + count)
        at += count
    assert at == STATE_PERIOD
    return states, lows, highs


def install_schema(conninfo: str, schema: str, npm: bool) -> str:
    """Install the worker schema; return which installer did it."""
    if npm:
        import node_queue  # the pinned npm package and the conninfo → URL that Node accepts

        node_queue.ensure_installed()
        url = node_queue.node_url(conninfo)
        subprocess.run(
            [str(node_queue.CLI), "--connection", url, "--schema", schema, "--schema-only"],
            cwd=node_queue.NODE_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
        return "npm graphile-worker 0.18.0"
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        migrate(cur, schema, recovery=False)
    return "console installer"


def build(options: BuildOptions, *, npm: bool = False) -> BuildReport:
    if options.jobs < build_dataset.MIN_JOBS:
        raise build_dataset.RefusedError(f"--jobs must be at least {build_dataset.MIN_JOBS:,}")
    started = time.monotonic()
    build_dataset.prepare_database(options)
    conninfo = build_dataset.scratch_conninfo(options.server_url, options.database)
    installer = install_schema(conninfo, options.schema, npm)
    schema = quote_schema(options.schema)
    with psycopg.connect(conninfo) as conn:
        conn.execute("set synchronous_commit = off")
        anchor = conn.execute("select now()").fetchone()[0]
        with conn.cursor() as cur:
            tasks = build_dataset.insert_names(cur, schema, "_private_tasks", "identifier", TASKS)
            names = [f"periodic:{q}" for q in range(QUEUES)]
            queue_ids = build_dataset.insert_names(
                cur, schema, "_private_job_queues", "queue_name", names
            )
            conn.commit()
            states, lows, highs = state_bounds()
            statement = JOBS_SQL.format(
                schema=schema,
                max_attempts=MAX_ATTEMPTS,
                batch=QUEUE_BATCH,
                queues=QUEUES,
                period=STATE_PERIOD,
            )
            params = {"anchor": anchor, "task_ids": tasks, "queue_ids": queue_ids}
            params |= {"states": states, "lows": lows, "highs": highs}
            for first in range(1, options.jobs + 1, build_dataset.CHUNK_SIZE):
                last = min(first + build_dataset.CHUNK_SIZE - 1, options.jobs)
                cur.execute(statement, {**params, "first": first, "last": last})
                conn.commit()
                print(f"  jobs {last:>12,} of {options.jobs:,}")
        conn.autocommit = True
        conn.execute(f"vacuum (analyze) {schema}._private_jobs")
        conn.execute(f"analyze {schema}._private_tasks, {schema}._private_job_queues")
        report = build_dataset._report(conn, options, time.monotonic() - started)
    with psycopg.connect(options.server_url, autocommit=True) as admin:
        info = {
            "marker": build_dataset.MARKER,
            "state": "built",
            "kind": "periodic",
            "schema_installer": installer,
            "jobs": options.jobs,
            "built_at": anchor.astimezone(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(report.seconds, 1),
        }
        build_dataset._mark(admin, options.database, info)
    print(f"periodic dataset, schema by the {installer}")
    return report
