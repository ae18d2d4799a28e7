"""Turn database trouble into a page that says what happened, never a stack trace.

- A query cancelled by statement_timeout becomes 504 "this query took too long": narrow the
  filters (they stay in the URL). A write cancelled that way says nothing more was changed; a
  preview or dry run (a POST without the confirmation token) changed nothing and says so.
- A read that ran out of its index budget (IndexNeeded, worker_admin/index_advice.py) gets the
  "this needs an index" page of views/index_guard.py.
- An unreachable database (down, restarting, refusing connections, too many clients) becomes
  503 "database unavailable", with what to check for that cause and a Retry-After. Nothing else
  is needed to recover: CONN_HEALTH_CHECKS makes the next request after the database returns
  drop the dead connection and open a new one.

Two places catch it. Django hands exceptions raised by views (and by rendering their templates)
to `process_exception`. But the first query of most requests is not in a view: loading the
session, when LoginRequiredMiddleware asks whether the user is logged in, happens in a
`process_view` hook, where an exception would become a bare 500. So `__call__`, which runs after
every middleware's process_request and before any process_view, loads the user first and answers
503 itself when that fails. A request without a session cookie needs no database for that, so
the login page and /healthz still answer while the database is down.
"""

from __future__ import annotations

import logging

import psycopg.errors
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, OperationalError
from django.shortcuts import render
from django.urls import Resolver404, resolve

from worker_admin import replica
from worker_admin.index_advice import IndexNeeded
from worker_admin.views.index_guard import index_needed_response

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

# What an operator should look at first, by cause; each list ends with the general checks.
CHECK_SERVER = (
    "Is PostgreSQL running and accepting connections on the host and port in DATABASE_URL? "
    "(`pg_isready -h HOST -p PORT` answers that.)"
)
CHECK_RESTART = (
    "If it is restarting or recovering, wait: the console reconnects by itself once the "
    "database is back, without a restart."
)
CHECK_SLOTS = (
    "Every connection slot is taken (max_connections, or the role's CONNECTION LIMIT): look "
    "for idle or stuck sessions in pg_stat_activity, or a pooler that opens too many."
)
CHECK_LOGIN = "Do the user name, password and database name in DATABASE_URL still work?"


def _cause(exc: BaseException) -> BaseException:
    return exc.__cause__ or exc


def _sqlstate(exc: BaseException) -> str:
    return getattr(_cause(exc), "sqlstate", None) or ""


def unavailable_reason(exc: BaseException) -> tuple[str, list[str]]:
    """A sentence on what happened and what to check, from the driver's error.

    Connection failures often carry no SQLSTATE (libpq reports them as text), so the server's
    own words are matched as well.
    """
    state, text = _sqlstate(exc), str(_cause(exc)).lower()
    if state in ("53300", "53400") or "too many" in text or "remaining connection slots" in text:
        return (
            "The database refused a new connection: it has too many clients already.",
            [CHECK_SLOTS, CHECK_RESTART],
        )
    if state in ("57P01", "57P02", "57P03") or "shutting down" in text or "starting up" in text:
        return (
            "The database is shutting down, starting up or restarting.",
            [CHECK_RESTART, CHECK_SERVER],
        )
    if state.startswith("28") or state == "3D000" or "authentication" in text:
        return (
            "The database refused the console's login or does not know its database.",
            [CHECK_LOGIN, CHECK_SERVER],
        )
    return (
        "The console cannot reach the Graphile Worker database, or lost its connection to it.",
        [CHECK_SERVER, CHECK_RESTART, CHECK_SLOTS],
    )


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(_cause(exc), psycopg.errors.QueryCanceled)


def _is_write(request) -> bool:
    return request.method not in ("GET", "HEAD", "OPTIONS")


# Two-step writes: the first POST (no confirmation token) only reads, to preview or dry-run.
PREVIEW_VIEWS = {"job_action", "sweep", "force_unlock"}


def _is_preview(request) -> bool:
    """A preview or dry run: it only reads. Resolved from the path, since the timeout may come
    before the view is chosen (loading the session, in __call__)."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return False
    return match.url_name in PREVIEW_VIEWS and "token" not in request.POST


def _forget_session_changes(request) -> None:
    """With the database away the session cannot be saved; trying would turn the answer into a
    500 on the way out (SessionMiddleware saves modified sessions after the view)."""
    session = getattr(request, "session", None)
    if session is not None:
        session.modified = False


def unavailable_response(request, exc: BaseException):
    _forget_session_changes(request)
    what, checks = unavailable_reason(exc)
    logger.error("Database unavailable on %s %s: %s", request.method, request.path, _cause(exc))
    if _is_write(request):
        what += (
            " Your change did not complete: the part in progress was rolled back, so nothing is "
            "half-done. Once the database is back, the audit log shows what was done; submit "
            "again if needed."
        )
    response = render(
        request,
        "worker_admin/error.html",
        {"title": "Database unavailable", "message": what, "checks": checks},
        status=503,
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def timeout_response(request):
    logger.warning("Statement timeout on %s %s", request.method, request.path)
    if _is_write(request) and _is_preview(request):
        context = {
            "title": "This preview took too long",
            "message": "The database cancelled the preview's read at the statement timeout "
            "(READ_STATEMENT_TIMEOUT_MS). Nothing was changed: a preview only reads. Try again "
            "with narrower filters or fewer jobs.",
        }
    elif _is_write(request):
        context = {
            "title": "This took too long",
            "message": "The database cancelled the change at the statement timeout, so it was "
            "rolled back. The audit log shows what was done before it; try again, or with fewer "
            "jobs.",
        }
    else:
        context = {
            "title": "This query took too long",
            "message": "The database cancelled it at the statement timeout "
            "(READ_STATEMENT_TIMEOUT_MS). Narrow the filters (a task, a queue, a state, a time "
            "range) and try again.",
            "keep_filters": True,
        }
    return render(request, "worker_admin/error.html", context, status=504)


class DatabaseErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None:
            try:
                user.is_authenticated  # noqa: B018 - loads the session now, where we can answer
            except DatabaseError as exc:
                # The error page must not ask again: show it as to a visitor who is not known.
                request.user = AnonymousUser()
                return self.process_exception(request, exc)
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, IndexNeeded):
            return index_needed_response(request, exception)
        if not isinstance(exception, DatabaseError):
            return None
        if _is_timeout(exception):
            return timeout_response(request)
        if isinstance(exception, OperationalError):
            _replica_failed(exception)
            return unavailable_response(request, exception)
        logger.exception("Database error on %s", request.path)
        return render(
            request,
            "worker_admin/error.html",
            {
                "title": "The database refused this request",
                "message": "Nothing was changed. The error was logged for the administrator.",
            },
            status=500,
        )


def _replica_failed(exception: BaseException) -> None:
    """This request read from the replica and lost it: the next ones read from the primary
    until the next check (worker_admin/replica.py) finds it back, instead of failing too."""
    chosen = replica.chosen()
    if chosen is not None and chosen.in_use:
        replica.mark_unavailable("unreachable: a read on it failed")
