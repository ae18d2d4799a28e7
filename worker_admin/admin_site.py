"""What the console adds around Django's admin site (/django-admin/), for every request.

- Who acts: every request runs inside `account_audit.acting_as(the signed-in user, path)`, so a
  change to an account made while answering it is audited as theirs, via "admin" on the admin
  site ("web" or "api" elsewhere).
- One transaction per write: a POST to the admin site runs its view in one transaction, so a
  change and its audit entry commit together or not at all (Django's add, change and delete
  views have one already; its password form and list actions do not).
- READ_ONLY: a POST to the admin site (other than signing in or out) is refused with a sentence,
  audited as rejected, before its view runs. The pages themselves show read-only forms then
  (worker_admin/admin.py), so this catches forged or stale forms.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError, transaction
from django.shortcuts import render

from worker_admin import audit
from worker_admin.account_audit import acting_as
from worker_admin.audit import AuditEntry
from worker_admin.middleware import DatabaseErrorMiddleware

ADMIN_NAMESPACE = "admin"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")
SIGNING_IN_OR_OUT = ("login", "logout")
READ_ONLY_SENTENCE = (
    "The console is read-only (READ_ONLY is set on the server): nothing can be changed "
    "through it, the admin site included. Nothing was changed."
)


def _via(request) -> str:
    match = request.resolver_match
    if match is not None and ADMIN_NAMESPACE in match.namespaces:
        return AuditEntry.Via.ADMIN
    if request.path.startswith("/api/"):
        return AuditEntry.Via.API
    return AuditEntry.Via.WEB


def refuse(request, *, action: str, sentence: str, status: int = 403):
    """The admin site's refusal: one sentence, on the record as rejected, nothing changed."""
    audit.record(
        actor=request.user,
        via=AuditEntry.Via.ADMIN,
        action=action[:40],
        outcome=AuditEntry.Outcome.REJECTED,
        parameters={"path": request.path[:500]},
        error=f"forbidden: {sentence}",
        summary="rejected; nothing changed",
    )
    return render(
        request,
        "worker_admin/error.html",
        {"title": "Not allowed", "message": sentence},
        status=status,
    )


class AdminSiteMiddleware:
    """After the CSRF and login checks (it calls admin views itself, so it comes last)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The path (admin site, API, console) is known once the URL is resolved: both are read
        # when a change happens.
        with acting_as(lambda: request.user, lambda: _via(request)):
            return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if (
            request.method in SAFE_METHODS
            or ADMIN_NAMESPACE not in match.namespaces
            or match.url_name in SIGNING_IN_OR_OUT
        ):
            return None
        if settings.READ_ONLY:
            return refuse(request, action=f"admin:{match.url_name}", sentence=READ_ONLY_SENTENCE)
        try:
            with transaction.atomic():
                return view_func(request, *view_args, **view_kwargs)
        except DatabaseError as exc:
            # Rolled back. Answer as the console does for any view: Django does not hand an
            # exception raised in a process_view hook to process_exception.
            return DatabaseErrorMiddleware(self.get_response).process_exception(request, exc)
