"""The NinjaAPI: token authentication, JSON error bodies, and the routers.

Every answer that is not a success is `{"detail": "<one sentence>"}` (validation errors add
`errors`, one per bad field). A request without a valid token gets 401, never the login page;
the views are exempt from Django's LoginRequiredMiddleware (see urls.py) and, as bearer-token
requests that carry no cookie credentials, from CSRF.
"""

from __future__ import annotations

import functools
import json
import logging
import re

import psycopg.errors
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, OperationalError
from django.http import JsonResponse
from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from worker_admin.api import tokens
from worker_admin.api.auth import BearerToken
from worker_admin.api.common import Refusal, detail, refuse, write_action
from worker_admin.index_advice import IndexNeeded

logger = logging.getLogger(__name__)

DESCRIPTION = """\
The Graphile Worker console's JSON API. Authenticate with `Authorization: Bearer <token>`
(an admin issues tokens: `manage.py console_token issue USER --name NAME`). A token acts with
its user's role: viewers read, operators act on jobs, admins also run maintenance.

Every write is two calls: `…/preview` answers what would change and a `fingerprint`;
`…/apply` takes the same body plus that fingerprint, recomputes the preview, and answers 409
without changing anything if the result differs. See docs/api.md.
"""


SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class StrictJSONParser(Parser):
    """JSON bodies as PostgreSQL can store them: no NaN or Infinity, and no unpaired
    surrogate escape ("\\ud800"), which is not text and would fail in the database driver."""

    def parse_body(self, request):
        def refuse_constant(constant: str):
            raise ValueError(f"{constant} is not JSON; use null or a number")

        data = json.loads(request.body, parse_constant=refuse_constant)
        if SURROGATE_ESCAPE.search(request.body):  # paired ones (emoji) are fine
            try:
                json.dumps(data, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    "it contains an unpaired surrogate escape, which is not text"
                ) from None
        return data


def signed_in_or_token(view):
    """The API's description and docs page are for people who may use it: a signed-in console
    user (the docs page in a browser) or a token holder (tools that read /api/schema). Both
    only read: other methods get 405."""

    read = require_safe(view)

    @functools.wraps(view)
    def guarded(request, *args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        has_token = scheme.lower() == "bearer" and tokens.authenticate(secret.strip()) is not None
        if request.user.is_authenticated or has_token:
            return read(request, *args, **kwargs)
        if request.path.rstrip("/").endswith("/docs"):
            return redirect_to_login(request.get_full_path())
        return JsonResponse({"detail": UNAUTHORIZED}, status=401)

    return guarded


api = NinjaAPI(
    title="Graphile Worker console API",
    version="1",
    description=DESCRIPTION,
    auth=BearerToken(),
    urls_namespace="api",
    openapi_url="/schema",
    docs_url="/docs",
    docs_decorator=signed_in_or_token,
    parser=StrictJSONParser(),
)


TOO_BIG = "The request body is larger than the server accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)."
UNAUTHORIZED = (
    "A valid API token is required: send `Authorization: Bearer <token>` with a token an admin "
    "issued (it may have been revoked, or its user deactivated)."
)


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    response = detail(UNAUTHORIZED, 401)
    response["WWW-Authenticate"] = 'Bearer realm="graphile-console"'
    return response


def _location(loc) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path"):
        # ninja nests the body under the view's argument name: body.body.ids → body.ids
        if len(parts) > 1 and parts[0] == "body" and parts[1] in ("body", "filters"):
            parts = [parts[0], *parts[2:]]
        if len(parts) > 1 and parts[0] == "query" and parts[1] == "filters":
            parts = [parts[0], *parts[2:]]
    return ".".join(parts)


def _is_write(request) -> bool:
    return request.method == "POST" and getattr(request, "auth", None) is not None


@api.exception_handler(ValidationError)
def _invalid(request, exc):
    errors = [
        {"field": _location(error.get("loc", ())), "message": str(error.get("msg", "invalid"))}
        for error in exc.errors
    ]
    first = errors[0] if errors else {"field": "", "message": "invalid"}
    sentence = f"The request is not valid: {first['field']}: {first['message']}."
    if first["field"] == "body" and first["message"] == "Field required":
        sentence = "The request needs a JSON object as its body."
    if len(errors) > 1:
        sentence += f" ({len(errors) - 1} more in `errors`.)"
    if _is_write(request):
        refuse(request, write_action(request), Refusal(422, sentence), {"errors": errors[:20]})
    return detail(sentence, 422, errors=errors[:100])


@api.exception_handler(HttpError)
def _http_error(request, exc):
    message = str(exc)
    cause = exc.__cause__
    if isinstance(cause, RequestDataTooBig):
        message = TOO_BIG
    elif isinstance(cause, json.JSONDecodeError):
        message = (
            f"The request body is not valid JSON: {cause.msg} at line {cause.lineno}, "
            f"column {cause.colno}."
        )
    elif isinstance(cause, UnicodeDecodeError):
        message = "The request body is not UTF-8 text."
    elif isinstance(cause, ValueError):
        message = f"The request body is not valid JSON: {cause}."
    elif isinstance(cause, RecursionError):
        message = "The request body is nested too deeply to be read."
    if cause is not None and _is_write(request):
        refuse(request, write_action(request), Refusal(exc.status_code, message))
    return detail(message, exc.status_code)


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    if _is_write(request):
        refuse(request, write_action(request), Refusal(400, TOO_BIG))
    return detail(TOO_BIG, 400)


@api.exception_handler(IndexNeeded)
def _index_needed(request, exc: IndexNeeded):
    """A guarded read past its budget (index_advice.py): which index, and how to create it."""
    logger.warning("API read needs %s on %s", exc.index, request.path)
    return detail(
        str(exc),
        504,
        error=str(exc),
        index=exc.index,
        indexes=[need.index for need in exc.needs],
        hint=exc.hint,
    )


@api.exception_handler(DatabaseError)
def _database_error(request, exc):
    cause = exc.__cause__ or exc
    if isinstance(cause, psycopg.errors.QueryCanceled):
        logger.warning("API read cancelled by statement_timeout on %s", request.path)
        return detail(
            "The database cancelled this query at the statement timeout: narrow the filters "
            "(a task, a queue, a state, a time range) and try again.",
            504,
        )
    if isinstance(exc, OperationalError):
        logger.error("Database unavailable: %s", cause)
        return detail("The console cannot reach the Graphile Worker database.", 503)
    logger.exception("Database error on %s", request.path)
    return detail(
        "The database refused this request; nothing was changed. The error was logged.", 500
    )


from worker_admin.api import crons, maintenance, maintenance_schema, reads, writes  # noqa: E402

api.add_router("", reads.router)
api.add_router("", crons.router)
api.add_router("", writes.router)
api.add_router("", maintenance.router)
api.add_router("", maintenance_schema.router)
