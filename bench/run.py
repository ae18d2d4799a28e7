"""The scale benchmark: server time of the console's pages on a large Graphile Worker queue.

    .venv/bin/python bench/run.py            # measure the pages on the gw_bench dataset
    .venv/bin/python bench/run.py --build    # build the 1M-job dataset first (build_dataset.py)

Each page is requested in-process through Django's test client, so the time covers the whole
request as the server sees it (every middleware, the login check, the view, its SQL and the
template rendering) and leaves out the network, the WSGI server and the browser. Every page gets
warm-up requests, then timed runs; the table shows the median and p95 of the timed runs. Results
go to bench/results/latest.json (git-ignored). See bench/README.md for the figures.

Built to grow: a measurement is a Probe (a name and a zero-argument function returning a status
and a row count), so the later suites (a naive Django admin, the best single SQL query per page,
Node workers' throughput while the console polls) are more probes in the same loop and table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project (dashboard, worker_admin) when run as a script

import build_dataset  # noqa: E402  (bench/ is sys.path[0] when this file runs as a script)
import suites  # noqa: E402

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"
BENCH_USER = "bench"
STALE_DATASET_HOURS = 1.0  # build_dataset keeps the state mix steady for an hour, then it drifts
TABS = ["ready", "scheduled", "locked", "failed", "retrying"]
# "Reschedule all jobs matching the filter to priority 3": the first POST, which previews.
RESCHEDULE_PREVIEW = {
    "action": "reschedule",
    "scope": "filter",
    "has_options": "1",
    "priority": "3",
}


@dataclass(frozen=True)
class Outcome:
    """What one request returned: an HTTP status (or an error name) and the table rows shown."""

    status: int | str
    rows: int | None = None
    elapsed_ms: float | None = None  # the timed part, when not the whole fetch (bulk apply)
    painted_ms: float | None = None  # over HTTP: the page alone, when its counts came after it


@dataclass(frozen=True)
class Probe:
    name: str
    target: str  # the URL path (or, for later SQL probes, a label of the query)
    fetch: Callable[[], Outcome]


@dataclass
class Measurement:
    name: str
    target: str
    status: int | str
    rows: int | None
    samples_ms: list[float] = field(default_factory=list)
    queries: int | None = None  # from one extra, instrumented request (not a timed one)
    sql_ms: float | None = None
    load_average: float | None = None  # the machine's 1-minute load after the runs: noise
    peak_rss_mib: float | None = None  # the process's peak RSS so far, after this page
    first_ms: float | None = None  # over HTTP: the very first request, before the warm-ups
    # over HTTP: that first page alone, when it came without its counts and asked for them
    first_paint_ms: float | None = None
    # over HTTP with --after-interval: one request once the snapshot interval has passed
    after_interval_ms: float | None = None

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.samples_ms) if self.samples_ms else None

    @property
    def p95_ms(self) -> float | None:
        # Interpolated between the closest ranks; with 15 runs it sits between the two slowest.
        if len(self.samples_ms) < 2:
            return self.median_ms
        return statistics.quantiles(self.samples_ms, n=20, method="inclusive")[18]

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "median_ms": self.median_ms, "p95_ms": self.p95_ms}


@dataclass(frozen=True)
class Targets:
    """Real values from the dataset for the filtered pages."""

    hot_task: str
    rare_task: str
    rare_task_jobs: int
    queue: str
    queue_jobs: int
    failed_job_id: int | None


# --- setting up Django against the scratch database ------------------------------------------


def configure_django(database_url: str) -> None:
    """Point the console's own settings module at the scratch database and start Django."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ["DEBUG"] = "0"  # DEBUG keeps every query in memory and would skew time and RSS
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production")
    # The console's tables (users, sessions) go into the scratch database, never elsewhere.
    os.environ.pop("CONSOLE_DATABASE_URL", None)

    import django

    # whitenoise warns once per process that collectstatic has not run; irrelevant here.
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.conf import settings

    settings.ROOT_URLCONF = "naive_admin"  # the console's URLs plus the naive admin's


def logged_in_client():
    """Create the console's tables and a bench user, and return a logged-in test client.

    The user is an operator (not a superuser): the role that may read the audit log, open the
    add-job form and preview bulk actions, and the one whose permission checks a real operator's
    requests pay for.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.test import Client

    from worker_admin.roles import OPERATOR, ensure_groups

    call_command("migrate", verbosity=0, interactive=False)
    ensure_groups()
    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
    user.is_superuser = user.is_staff = False
    user.save(update_fields=["is_superuser", "is_staff"])
    user.groups.set([Group.objects.get(name=OPERATOR)])
    # A 500 must come back as a response to report, not as an exception that ends the run.
    client = Client(raise_request_exception=False)
    client.force_login(user)
    # An admin for the maintenance dry run and, as a superuser, for the naive admin's pages.
    from worker_admin.roles import ADMIN

    admin, _ = get_user_model().objects.get_or_create(username=BENCH_USER + "_admin")
    admin.is_superuser = admin.is_staff = True
    admin.save(update_fields=["is_superuser", "is_staff"])
    admin.groups.set([Group.objects.get(name=ADMIN)])
    admin_client = Client(raise_request_exception=False)
    admin_client.force_login(admin)
    return client, admin_client


def quiet_repeated_logs() -> None:
    """Log each distinct request warning once: a failing page is repeated 17 times."""
    seen: set[str] = set()

    def first_time(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in seen:
            return False
        seen.add(message)
        return True

    for name in ("django.request", "worker_admin.middleware"):
        logging.getLogger(name).addFilter(first_time)


def worker_query(sql: str, params: list[Any] | None = None) -> list[tuple]:
    from django.conf import settings
    from django.db import connections

    with connections[settings.WORKER_DATABASE].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def worker_schema() -> str:
    from django.conf import settings

    from worker_admin.installer import quote_schema

    return quote_schema(settings.GRAPHILE_WORKER_SCHEMA)


def discover_targets() -> Targets:
    """Pick a hot task, a rare task, a typical queue and a failed job from the data itself."""
    schema = worker_schema()
    tasks = worker_query(
        f"""
        select t.identifier, count(*) from {schema}._private_jobs as j
          join {schema}._private_tasks as t on t.id = j.task_id
         group by t.identifier order by count(*) desc, t.identifier
        """
    )
    queues = worker_query(
        f"""
        select q.queue_name, count(*) from {schema}._private_jobs as j
          join {schema}._private_job_queues as q on q.id = j.job_queue_id
         group by q.queue_name order by count(*) desc, q.queue_name
        """
    )
    if not tasks or not queues:
        raise SystemExit("the benchmark database has no jobs: run with --build first")
    # The rarest task that still has jobs, and the median queue: a typical tenant's queue.
    rare_task, rare_jobs = tasks[-1]
    queue, queue_jobs = queues[len(queues) // 2]
    failed = worker_query(
        f"""
        select id from {schema}._private_jobs
         where locked_at is null and attempts >= max_attempts and last_error is not null
         order by id desc limit 1
        """
    )
    return Targets(
        hot_task=tasks[0][0],
        rare_task=rare_task,
        rare_task_jobs=rare_jobs,
        queue=queue,
        queue_jobs=queue_jobs,
        failed_job_id=failed[0][0] if failed else None,
    )


# --- probes ----------------------------------------------------------------------------------

TBODY = re.compile(r"<tbody\b.*?</tbody>", re.DOTALL)
ROW = re.compile(r"<tr\b")


def table_rows(html: str) -> int | None:
    """Rows in the page's table bodies (None for a page without a table, such as job detail)."""
    bodies = TBODY.findall(html)
    return sum(len(ROW.findall(body)) for body in bodies) if bodies else None


def page_probe(client, name: str, path: str, headers: dict[str, str] | None = None) -> Probe:
    def fetch() -> Outcome:
        try:
            response = client.get(path, headers=headers or {})
        except Exception as exc:  # a broken page is a result to report, not a reason to stop
            return Outcome(type(exc).__name__)
        rows = table_rows(response.content.decode(errors="replace"))
        return Outcome(response.status_code, rows, painted_ms=getattr(response, "painted_ms", None))

    return Probe(name, path, fetch)


def post_probe(client, name: str, path: str, data: dict[str, str]) -> Probe:
    """A form POST, sent as the browser sends it (the test client skips the CSRF check)."""

    def fetch() -> Outcome:
        try:
            response = client.post(path, data)
        except Exception as exc:
            return Outcome(type(exc).__name__)
        rows = table_rows(response.content.decode(errors="replace"))
        return Outcome(response.status_code, rows, painted_ms=getattr(response, "painted_ms", None))

    return Probe(name, f"POST {path}", fetch)


def skipped_probe(name: str, reason: str) -> Probe:
    return Probe(name, "-", lambda: Outcome(f"skipped: {reason}"))


def deep_page_path(client, clicks: int, start: str = "/jobs/") -> str | None:
    """Follow the jobs list's "Older" link `clicks` times from `start`; return its path.

    The link comes from the response context, which the test client only records in Django's
    test environment; that instrumentation is switched on for this walk only, so that the timed
    requests run the normal template code.
    """
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    try:
        path: str | None = start
        for _ in range(clicks):
            response = client.get(path)
            path = older_path(response.context) if response.status_code == 200 else None
            if path is None:
                return None
        return path
    finally:
        teardown_test_environment()


def older_path(context) -> str | None:
    """The jobs list's link to the next older page, in either shape the view has had.

    The first list exposed `older_cursor` (an id, sent back as `after=`); the keyset rewrite
    exposes `page.older_url` (a query string with a signed `cursor=`).
    """
    if context is None:
        return None
    older_url = getattr(context.get("page"), "older_url", None)
    if older_url:
        return urljoin("/jobs/", older_url)
    cursor = context.get("older_cursor")
    return f"/jobs/?after={cursor}" if cursor is not None else None


def console_pages(
    client, admin_client, targets: Targets, extra, deep_pages: int, walker=None
) -> list:
    """(key, probe) per page, in the order of the results table; the key names the same page
    in the floor and naive suites (bench/suites.py).

    `walker` follows the Older links to the deep pages (a Django test client: the link is read
    from the response context); by default `client` itself. Over HTTP (bench/http_pages.py) the
    in-process client walks and the HTTP session is timed on the path it found."""
    pages = [
        ("overview", page_probe(client, "overview", "/")),
        ("overview", page_probe(client, "overview (htmx refresh)", "/", {"HX-Request": "true"})),
        ("jobs: all", page_probe(client, "jobs: all", "/jobs/")),
        *(
            (f"jobs: {tab}", page_probe(client, f"jobs: {tab}", f"/jobs/?state={tab}"))
            for tab in TABS
        ),
    ]
    # The deep page of the default list (newest first) and of the ready tab (run order).
    for label, start in (("jobs", "/jobs/"), ("jobs: ready", "/jobs/?state=ready")):
        deep = deep_page_path(walker or client, deep_pages, start)
        deep_name = f"{label}: {deep_pages} x Older (page {deep_pages + 1})"
        key = "jobs: deep page" if label == "jobs" else "-"
        pages.append(
            (key, page_probe(client, deep_name, deep))
            if deep
            else (key, skipped_probe(deep_name, "no older page"))
        )
    hot, rare, queue = targets.hot_task, targets.rare_task, targets.queue
    pages += [
        ("jobs: hot task", page_probe(client, f"jobs: hot task {hot}", f"/jobs/?task={hot}")),
        (
            "jobs: rare task",
            page_probe(
                client,
                f"jobs: rare task {rare} ({targets.rare_task_jobs} jobs)",
                f"/jobs/?task={rare}",
            ),
        ),
        (
            "jobs: queue",
            page_probe(
                client,
                f"jobs: queue {queue} ({targets.queue_jobs:,} jobs)",
                f"/jobs/?queue={queue}",
            ),
        ),
        ("search: key", page_probe(client, "search: by key", f"/jobs/?q={extra.job_key}")),
        ("search: id", page_probe(client, "search: by id", f"/jobs/?q={extra.job_id}")),
        (
            "search: error text",
            page_probe(
                client,
                f"search: error text “{extra.error_text}”",
                f"/jobs/?q={extra.error_text.replace(' ', '+')}",
            ),
        ),
        ("job detail", page_probe(client, "job detail (failed)", f"/jobs/{extra.job_id}/")),
    ]
    pages += [
        (page, page_probe(client, page, f"/{page}/")) for page in ("failures", "queues", "tasks")
    ]
    pages += [
        ("workers", page_probe(client, "workers", "/workers/")),
        (
            "sweep dry run",
            post_probe(
                admin_client,
                "sweep stale workers: dry run",
                "/maintenance/sweep/",
                {"threshold_minutes": "5", "delay_seconds": "30"},
            ),
        ),
        ("-", page_probe(client, "audit", "/audit/")),
        ("-", page_probe(client, "add job (form)", "/jobs/add/")),
        (
            "-",
            post_probe(
                client,
                f"bulk reschedule preview: task {hot} (over the limit)",
                f"/jobs/actions/?task={hot}",
                RESCHEDULE_PREVIEW,
            ),
        ),
        (
            "bulk preview",
            post_probe(
                client,
                f"bulk reschedule preview: queue {extra.bulk_queue} ({extra.bulk_queue_jobs:,})",
                f"/jobs/actions/?queue={extra.bulk_queue}",
                RESCHEDULE_PREVIEW,
            ),
        ),
        (
            "bulk apply",
            Probe(
                f"bulk reschedule apply: queue {extra.bulk_queue} ({extra.bulk_queue_jobs:,})",
                f"POST /jobs/actions/?queue={extra.bulk_queue} + token",
                suites.bulk_apply_fetch(
                    client, f"/jobs/actions/?queue={extra.bulk_queue}", RESCHEDULE_PREVIEW
                ),
            ),
        ),
    ]
    return pages


# --- measuring -------------------------------------------------------------------------------


def measure(
    probe: Probe, runs: int, warmups: int, budget_s: float | None = None, queries: bool = True
) -> Measurement:
    """Warm up, then time `runs` requests; the status is the first one that was not 200.

    `budget_s` stops the timed runs early once they have taken that long (at least one run):
    the naive admin's pages take seconds each on 10M jobs.
    """
    for _ in range(warmups):
        probe.fetch()
    samples, statuses, outcome = [], [], Outcome("not run")
    spent = 0.0
    for _ in range(runs):
        started = time.perf_counter()
        outcome = probe.fetch()
        took = (time.perf_counter() - started) * 1000
        samples.append(outcome.elapsed_ms if outcome.elapsed_ms is not None else took)
        statuses.append(outcome.status)
        spent += took / 1000
        if budget_s is not None and spent > budget_s:
            break
    status = next((s for s in statuses if s != 200), outcome.status)
    measurement = Measurement(probe.name, probe.target, status, outcome.rows, samples)
    if isinstance(outcome.status, str) and outcome.status.startswith("skipped"):
        measurement.samples_ms = []
        return measurement
    measurement.load_average = round(os.getloadavg()[0], 2)
    measurement.peak_rss_mib = round(peak_rss_mib(), 1)
    if queries:
        measurement.queries, measurement.sql_ms = count_queries(probe)
    return measurement


def count_queries(probe: Probe) -> tuple[int, float]:
    """Queries and their database time for one extra request, with query logging on.

    Kept out of the timed runs: Django's query log adds its own overhead.
    """
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    with ExitStack() as stack:
        captures = [stack.enter_context(CaptureQueriesContext(c)) for c in connections.all()]
        probe.fetch()
    queries = [query for capture in captures for query in capture.captured_queries]
    return len(queries), sum(float(query["time"]) for query in queries) * 1000


# --- context: the machine and the dataset ----------------------------------------------------


def machine_info() -> dict[str, Any]:
    def meminfo_gib() -> float:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
        return 0.0

    def cpu_model() -> str:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    settings = dict(
        worker_query(
            "select name, current_setting(name) from pg_settings where name in "
            "('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather', 'jit')"
        )
    )
    (version,) = worker_query("show server_version")[0]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "memory_gib": meminfo_gib(),
        "postgresql": version,
        "postgresql_settings": settings,
        "python": sys.version.split()[0],
        "load_average_at_start": list(os.getloadavg()),
    }


def dataset_info(server_url: str, database: str) -> dict[str, Any]:
    schema = worker_schema()
    info = build_dataset.read_dataset_info(server_url, database) or {}
    (jobs_bytes, database_bytes, estimated_jobs) = worker_query(
        f"""
        select pg_total_relation_size('{schema}._private_jobs'),
               pg_database_size(current_database()),
               (select reltuples::bigint from pg_class
                 where oid = '{schema}._private_jobs'::regclass)
        """
    )[0]
    built_at = info.get("built_at")
    age_hours = (
        (datetime.now(UTC) - datetime.fromisoformat(built_at)).total_seconds() / 3600
        if built_at
        else None
    )
    return {
        "database": database,
        "jobs": info.get("jobs", estimated_jobs),
        "built_at": built_at,
        "age_hours": round(age_hours, 2) if age_hours is not None else None,
        "build_seconds": info.get("build_seconds"),
        "jobs_table_bytes": jobs_bytes,
        "database_bytes": database_bytes,
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the files that differed from it (others edit the tree too)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:
            return ""
        return done.stdout

    # Porcelain lines are "XY path": the two status letters, a space, then the path.
    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted": changed}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


@dataclass
class Comparison:
    key: str
    console: Measurement
    floor: Measurement | None
    naive: Measurement | None

    def as_json(self) -> dict[str, Any]:
        return {
            "page": self.key,
            "console": self.console.as_json(),
            "floor": self.floor.as_json() if self.floor else None,
            "naive": self.naive.as_json() if self.naive else None,
        }


def worker_cursor():
    from django.conf import settings
    from django.db import connections

    return connections[settings.WORKER_DATABASE].cursor()


def index_status():
    from django.conf import settings

    from worker_admin import indexes

    return indexes.status(settings.WORKER_DATABASE, settings.GRAPHILE_WORKER_SCHEMA)


def set_indexes(wanted: bool) -> None:
    """Create or drop every opt-in index (CONCURRENTLY), then ANALYZE for fresh statistics."""
    from django.conf import settings

    from worker_admin import indexes

    alias, schema = settings.WORKER_DATABASE, settings.GRAPHILE_WORKER_SCHEMA
    for item in indexes.status(alias, schema):
        started = time.monotonic()
        if wanted and not (item.present and item.valid):
            indexes.create(alias, schema, item.index.name)
            print(f"created {item.index.name} in {time.monotonic() - started:.0f} s")
        elif not wanted and item.present:
            indexes.drop(alias, schema, item.index.name)
            print(f"dropped {item.index.name}")


def prewarm() -> dict[str, Any]:
    """Read the jobs table and its indexes into the OS cache (pg_prewarm's 'read' mode: the
    shared buffers are left as they are). A database the console watches is in use, so its hot
    relations are cached; a freshly built or restored one is not, and its first random samples
    then measure the disk."""
    started = time.monotonic()
    with worker_cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")  # GBs from disk: longer than a page's 10 s
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        cursor.execute(
            "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_prewarm'"
        )
        where = cursor.fetchone()[0]  # the console's connection has its own search_path
        cursor.execute(
            f"""
            SELECT coalesce(sum({where}.pg_prewarm(c.oid::regclass, 'read')), 0)
              FROM pg_class c
             WHERE c.oid = '{worker_schema()}._private_jobs'::regclass
                OR c.oid IN (SELECT indexrelid FROM pg_index
                              WHERE indrelid = '{worker_schema()}._private_jobs'::regclass)
            """
        )
        blocks = int(cursor.fetchone()[0])
        cursor.execute("RESET statement_timeout")
    seconds = time.monotonic() - started
    print(
        f"prewarmed the jobs table and its indexes: {blocks * 8 / 1024:,.0f} MiB in {seconds:.0f} s"
    )
    return {"mib": round(blocks * 8 / 1024), "seconds": round(seconds, 1)}


# --- output ----------------------------------------------------------------------------------


def fmt(value: float | int | None, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def print_table(measurements: list[Measurement]) -> None:
    width = max(len(m.name) for m in measurements)
    header = f"{'page':<{width}}  {'median ms':>9}  {'p95 ms':>8}  {'sql ms*':>7}  "
    header += f"{'queries*':>8}  {'rows':>5}  {'load':>4}  status"
    print(header)
    print("-" * len(header))
    for m in measurements:
        print(
            f"{m.name:<{width}}  {fmt(m.median_ms):>9}  {fmt(m.p95_ms):>8}  "
            f"{fmt(m.sql_ms):>7}  {fmt(m.queries):>8}  {fmt(m.rows):>5}  "
            f"{fmt(m.load_average, '{:.1f}'):>4}  {m.status}"
        )
    print("* from one extra request with query logging on (not one of the timed runs)")
    print("load: the machine's 1-minute load average after the page's runs (2 CPUs here)")


def run_observer(args: argparse.Namespace) -> dict[str, Any] | None:
    """bench/observer.py in its own process (it points Django at its own database)."""
    output = args.output.with_name("observer.json")
    print("\nobserver effect (bench/observer.py) …", flush=True)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "observer.py"),
            "--server-url",
            args.server_url,
            "--output",
            str(output),
        ],
        cwd=ROOT,
    )
    if done.returncode != 0 or not output.exists():
        print(f"observer run failed (exit {done.returncode})")
        return None
    return json.loads(output.read_text())


def print_comparison(comparisons: list[Comparison]) -> None:
    """console, floor, naive medians and the two ratios, per page."""

    def ratio(a: float | None, b: float | None) -> str:
        return "-" if not a or not b else f"{a / b:,.1f}x"

    header = (
        f"{'page':<20}  {'console ms':>10}  {'floor ms':>8}  {'naive ms':>9}  "
        f"{'console/floor':>13}  {'naive/console':>13}  naive status"
    )
    print(header)
    print("-" * len(header))
    for c in comparisons:
        floor = c.floor.median_ms if c.floor else None
        naive = c.naive.median_ms if c.naive else None
        print(
            f"{c.key:<20}  {fmt(c.console.median_ms):>10}  {fmt(floor, '{:,.1f}'):>8}  "
            f"{fmt(naive):>9}  {ratio(c.console.median_ms, floor):>13}  "
            f"{ratio(naive, c.console.median_ms):>13}  {c.naive.status if c.naive else '-'}"
        )
    print("median of the timed runs; floor = the best single SQL query alone; naive = Django")
    print("admin over the same models (exact COUNT, OFFSET pages), fewer runs (--naive-runs)")


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build the dataset first")
    build_dataset.add_build_arguments(parser)
    parser.add_argument("--runs", type=int, default=15, help="timed runs per page (%(default)s)")
    parser.add_argument("--warmups", type=int, default=2, help="untimed runs first (%(default)s)")
    parser.add_argument(
        "--deep-pages",
        type=int,
        default=20,
        help="how many times to follow the jobs list's Older link for the deep page "
        "(%(default)s; the target of the 10M benchmark is 500)",
    )
    parser.add_argument(
        "--pg-options",
        default="",
        help="extra libpq `options` for the console's connection, to try a server setting "
        'without touching the app, e.g. "-c jit=off"',
    )
    parser.add_argument(
        "--indexes",
        choices=["keep", "with", "without"],
        default="keep",
        help="create (with) or drop (without) the console's opt-in indexes before measuring "
        "(CONCURRENTLY; default: keep what the database has)",
    )
    parser.add_argument(
        "--console-only", action="store_true", help="skip the floor and naive suites"
    )
    parser.add_argument("--naive-runs", type=int, default=5, help="timed runs per naive page")
    parser.add_argument(
        "--naive-budget",
        type=float,
        default=15.0,
        help="stop a naive page's runs once they took this many seconds (%(default)s)",
    )
    parser.add_argument(
        "--exact-row-limit",
        type=int,
        help="treat tables above this many rows as large (the console's sampled and bounded "
        "paths); for the smoke test's small dataset (default: the console's own limit)",
    )
    parser.add_argument("--only", help="measure only the pages whose name contains this text")
    parser.add_argument(
        "--sample-reuse",
        type=float,
        default=0.0,
        help="seconds for which requests share one read of the console's sample and its "
        "snapshots (over HTTP: the server's SHARED_SNAPSHOT_SECONDS; the console uses 5; "
        "default 0: every timed request pays for its own)",
    )
    parser.add_argument(
        "--after-interval",
        action="store_true",
        help="over HTTP with --sample-reuse N: after the timed runs, wait N seconds and time one "
        "more request, the first of the next interval (answered from the last snapshot, "
        "renewed after the response)",
    )
    parser.add_argument(
        "--no-observer",
        action="store_true",
        help="skip the observer-effect run (Node workers' throughput with and without the "
        "console polling; bench/observer.py)",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="measure the pages over HTTP through the production server (manage.py serve, "
        "gunicorn) instead of in-process (bench/http_pages.py)",
    )
    parser.add_argument("--http-workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--http-threads", type=int, default=4, help="threads per process")
    parser.add_argument(
        "--history",
        action="store_true",
        help="time one history snapshot and the overview with and without its charts "
        "(bench/history.py)",
    )
    parser.add_argument(
        "--prewarm",
        action="store_true",
        help="read the jobs table and its indexes once first (pg_prewarm 'read': into the "
        "OS cache), as a database in use has them; without it the first samples read from disk",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    if args.output == DEFAULT_OUTPUT and (args.http or args.history):
        args.output = DEFAULT_OUTPUT.with_name("http.json" if args.http else "history.json")
    return args


def other_mode(args, database_url: str, targets, extra, client, context: dict) -> int:
    """--http (bench/http_pages.py) or --history (bench/history.py): their own results file."""
    if args.http:
        import http_pages

        results = http_pages.main(args, database_url, targets, extra, walker=client)
    else:
        import history

        results = history.bench_mode(args, client)
    results |= context
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    write_results(args.output, results)
    print(f"results written to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.build:
        try:
            report = build_dataset.build(build_dataset.options_from(args))
        except build_dataset.RefusedError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
        print(build_dataset.summary(report) + "\n")
    os.environ["GRAPHILE_WORKER_SCHEMA"] = args.schema
    database_url = build_dataset.scratch_conninfo(args.server_url, args.database)
    if args.pg_options:
        database_url = make_conninfo(database_url, options=args.pg_options)
    configure_django(database_url)
    code = code_version()  # now: Python modules are loaded once, later edits do not count
    from worker_admin import stats

    # Each timed request reads its own sample unless asked otherwise: the cold cost, which one
    # user's refreshes pay (the console shares a sample between requests within its interval).
    stats.SAMPLE_REUSE_SECONDS = args.sample_reuse
    if args.exact_row_limit:
        stats.EXACT_ROW_LIMIT = args.exact_row_limit
        stats.SAMPLE_ROWS = max(stats.SAMPLE_WINDOWS, args.exact_row_limit // 2)
    quiet_repeated_logs()
    client, admin_client = logged_in_client()

    from django.conf import settings

    started_at = datetime.now(UTC)
    machine = machine_info()
    dataset = dataset_info(args.server_url, args.database)
    print(
        f"{dataset['jobs']:,} jobs in {args.database}, built {dataset['built_at']}; "
        f"{machine['nproc']} CPUs, {machine['memory_gib']} GiB, PostgreSQL {machine['postgresql']}"
    )
    if dataset["age_hours"] is not None and dataset["age_hours"] > STALE_DATASET_HOURS:
        print(
            f"note: the dataset is {dataset['age_hours']:.1f} h old; scheduled and retrying jobs "
            f"are turning ready (rebuild with --build --rebuild for the designed mix)"
        )
    targets = discover_targets()
    extra = suites.discover_extra(worker_query, worker_schema(), targets, args.deep_pages)
    if args.indexes != "keep":
        set_indexes(args.indexes == "with")
    present = [i.index.name for i in index_status() if i.present]
    print(f"opt-in indexes present: {', '.join(present) or 'none'}")
    context = {"machine": machine, "dataset": dataset, "code": code, "indexes": present}
    if args.prewarm:
        context["prewarmed"] = prewarm()
    if args.http or args.history:
        return other_mode(args, database_url, targets, extra, client, context)
    measurements, comparisons = [], []
    # --only without the deep pages skips the walk to them (a thousand requests at 10M).
    walk = args.deep_pages if not args.only or "Older" in args.only else 0
    pages = console_pages(client, admin_client, targets, extra, walk)
    floors = suites.floor_sql(extra) if not args.console_only else {}
    naive = suites.naive_paths(extra, targets) if not args.console_only else {}
    seen: set[str] = set()
    if args.only:
        pages = [(key, probe) for key, probe in pages if args.only in probe.name]
    for key, probe in pages:
        print(f"  {probe.name} …", flush=True)
        console = measure(probe, args.runs, args.warmups)
        measurements.append(console)
        if key == "-" or key in seen:
            continue
        seen.add(key)
        floor = naive_m = None
        if key in floors:
            sql, params = floors[key]
            floor_p = Probe(f"floor: {key}", sql, suites.floor_probe(worker_cursor, sql, params))
            floor = measure(floor_p, args.runs, args.warmups, queries=False)
        if key in naive:
            naive_p = page_probe(admin_client, f"naive: {key}", naive[key])
            naive_m = measure(
                naive_p, args.naive_runs, 0, budget_s=args.naive_budget, queries=False
            )
        comparisons.append(Comparison(key, console, floor, naive_m))
    print()
    print_table(measurements)
    print()
    print_comparison(comparisons)
    rss = peak_rss_mib()
    print(f"\npeak RSS of the benchmark process: {rss:,.0f} MiB")
    observer = None if args.no_observer else run_observer(args)
    write_results(
        args.output,
        {
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
            "dataset": dataset,
            "code": code,
            "settings": {
                "runs": args.runs,
                "warmups": args.warmups,
                "deep_pages": args.deep_pages,
                "read_statement_timeout_ms": settings.READ_STATEMENT_TIMEOUT_MS,
                "conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
                "pg_options": args.pg_options,
                "sample_reuse_seconds": args.sample_reuse,
            },
            "targets": asdict(targets),
            "pages": [m.as_json() for m in measurements],
            "comparison": [c.as_json() for c in comparisons],
            "indexes": present,
            "peak_rss_mib": round(rss, 1),
            "observer": observer,
        },
    )
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
