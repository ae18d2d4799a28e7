"""The console's own timings for /metrics: each request, and each SQL query a request runs.

RequestMetricsMiddleware wraps every database connection with Django's `execute_wrapper` for
the length of a request, then files the query and request durations under the request's
resolved URL name (`worker_admin:jobs`), never its raw path, so job ids and query strings cannot
multiply the series. Requests that match no URL are filed as "unmatched".

The histograms live in this process. Under a server with several worker processes, set
PROMETHEUS_MULTIPROC_DIR to an empty directory that every process can write (prometheus_client's
multiprocess mode, chosen when the library is imported): each process then writes its samples
there and /metrics sums them, whichever process answers the scrape.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack

from django.db import connections
from prometheus_client import CollectorRegistry, Histogram, multiprocess

UNMATCHED = "unmatched"

QUERY_SECONDS = Histogram(
    "graphile_console_query_duration_seconds",
    "Duration of each SQL query the console ran while answering a request, by URL name.",
    ["view"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,  # registered per scrape: see register_timings()
)
REQUEST_SECONDS = Histogram(
    "graphile_console_request_duration_seconds",
    "Duration of the console's requests, by URL name and status class (2xx, 3xx, 4xx, 5xx).",
    ["view", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def register_timings(registry: CollectorRegistry) -> None:
    """Add the timings to a scrape's registry: this process's, or every process's."""
    if multiprocess_mode():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(QUERY_SECONDS)
        registry.register(REQUEST_SECONDS)


def view_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    # A pattern without a name falls back to its route, which is just as bounded.
    return match.view_name or match.route or UNMATCHED


class _QueryTimer:
    """An execute_wrapper that notes how long each query took, failed ones included."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.durations.append(time.perf_counter() - started)


class RequestMetricsMiddleware:
    """Times each request and its SQL queries. Place it early: it then covers the session, the
    login check and the other middleware as well as the view. Queries run while a streaming
    response is being sent, after the view returned, are not counted."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        timer = _QueryTimer()
        with ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(timer))
            response = self.get_response(request)
        view = view_label(request)
        for duration in timer.durations:
            QUERY_SECONDS.labels(view).observe(duration)
        status = f"{response.status_code // 100}xx"
        REQUEST_SECONDS.labels(view, status).observe(time.perf_counter() - started)
        return response
