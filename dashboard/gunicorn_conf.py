"""gunicorn's settings for the console: `python3 manage.py serve` uses them, and so does
`gunicorn -c dashboard/gunicorn_conf.py dashboard.wsgi` for those who run gunicorn themselves.

gthread workers: the console is a synchronous Django app whose requests mostly wait on
PostgreSQL, so a few processes with a few threads each keep the cores busy while queries run,
and each thread holds one persistent database connection (CONN_MAX_AGE).
"""

from __future__ import annotations

import os

bind = os.environ.get("SERVE_BIND", "127.0.0.1:8000")
worker_class = "gthread"
# gunicorn's usual WEB_CONCURRENCY; by default one process per core (at least 2, at most 8).
workers = int(os.environ.get("WEB_CONCURRENCY", min(max(os.cpu_count() or 1, 2), 8)))
threads = int(os.environ.get("SERVE_THREADS", "4"))
# A request may take READ_STATEMENT_TIMEOUT_MS (10 s) per query and a bulk action answers
# after ACTION_STEP_SECONDS: 60 s leaves room for both before a worker counts as hung.
timeout = 60
# On SIGTERM, workers finish the requests they are serving for up to this long, then exit.
graceful_timeout = 30
# Longer than the pages' refresh (POLL_INTERVAL_SECONDS, 5 s by default): a tab polling the
# server directly keeps its connection instead of opening one per refresh (the threaded worker
# holds idle connections in its poller, not in a thread).
keepalive = 20
# Recycle workers now and then, spread out so they never all restart at once. Not often: open
# tabs poll several times a second between them, and a fresh worker pays Django's start and its
# first requests' catalog checks again (every ~8 minutes per worker at 2,000 with 20 watchers).
max_requests = 20_000
max_requests_jitter = 2_000
accesslog = "-"
errorlog = "-"
# Proxies' X-Forwarded-* headers are Django's business (HTTPS, TRUSTED_PROXY_COUNT), not ours.
forwarded_allow_ips = ""


def child_exit(server, worker) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (docs/metrics.md), drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker) -> None:
    """Import the views, compile the templates and read the schema's capabilities before this
    worker takes its first request (dashboard/warmup.py)."""
    from dashboard.warmup import warm

    warm()
