"""Turn database trouble into a page that says what happened, never a stack trace.

A read cancelled by statement_timeout becomes "this query took too long: narrow the filters"
(the filters stay in the URL); an unreachable database becomes 503 "database unavailable".
"""

from __future__ import annotations

import logging

import psycopg.errors
from django.db import DatabaseError, OperationalError
from django.shortcuts import render

logger = logging.getLogger(__name__)


def _cause(exc: BaseException) -> BaseException:
    return exc.__cause__ or exc


class DatabaseErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, DatabaseError):
            return None
        cause = _cause(exception)
        if isinstance(cause, psycopg.errors.QueryCanceled):
            logger.warning("Read cancelled by statement_timeout on %s", request.path)
            return render(
                request,
                "worker_admin/error.html",
                {
                    "title": "This query took too long",
                    "message": "The database cancelled it at the statement timeout. "
                    "Narrow the filters (a task, a queue, a state, a time range) and try again.",
                    "keep_filters": True,
                },
                status=504,
            )
        if isinstance(exception, OperationalError):
            logger.error("Database unavailable: %s", cause)
            return render(
                request,
                "worker_admin/error.html",
                {
                    "title": "Database unavailable",
                    "message": "The console cannot reach the Graphile Worker database. Check "
                    "that PostgreSQL is running and accepting connections, and that "
                    "DATABASE_URL is right. This page will work again once it is back.",
                },
                status=503,
            )
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
