"""The error pages (404, 403, 400, 500): one plain sentence and a way back, never the name of an
exception class or a Python message. A view that raises Http404 with a sentence of its own ("There
is no job 7: it may have completed") keeps it; Django's own reasons (Resolver404's list of tried
patterns, a SuspiciousOperation's header dump) are not for the reader."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django.template.loader import get_template
from django.urls import Resolver404
from django.views.decorators.csrf import requires_csrf_token


def _own_sentence(exception: BaseException | None) -> str | None:
    if exception is None or isinstance(exception, Resolver404) or not exception.args:
        return None
    message = exception.args[0]
    return message if isinstance(message, str) and message.strip() else None


@requires_csrf_token
def not_found(request, exception: Http404 | None = None):
    context = {"message": _own_sentence(exception) or "No page at this address."}
    return render(request, "404.html", context, status=404)


@requires_csrf_token
def permission_denied(request, exception: BaseException | None = None):
    return render(request, "403.html", status=403)


@requires_csrf_token
def bad_request(request, exception: BaseException | None = None):
    return render(request, "400.html", status=400)


@requires_csrf_token
def server_error(request):
    # No request context: the database (sessions, the user) may be what failed.
    from django.http import HttpResponseServerError

    return HttpResponseServerError(get_template("500.html").render())
