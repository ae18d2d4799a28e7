"""Login throttling with two limits: one per (user name, address), one per account.

django-axes compares every lockout parameter set against one AXES_FAILURE_LIMIT. An attacker
with many addresses stays under a per-address limit for ever, so the account also has a limit
of its own (LOGIN_ACCOUNT_FAILURE_LIMIT, higher: a user who mistypes from one address is paused
long before the whole account is). Both count failures within the same cool-off.

The price of the account limit: someone who knows a user name can pause that account by
failing on purpose. An admin lifts it at once with `manage.py axes_reset_username NAME`.
"""

from __future__ import annotations

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.db.models import Sum


def _sum(attempts) -> int:
    return attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0


class ConsoleAxesHandler(AxesDatabaseHandler):
    def _recent(self, request, credentials):
        username = get_client_username(request, credentials)
        recent = AccessAttempt.objects.filter(username=username)
        if settings.AXES_COOLOFF_TIME is not None:
            recent = recent.filter(attempt_time__gte=get_cool_off_threshold(request))
        return recent

    def get_failures(self, request, credentials: dict | None = None) -> int:
        """This user name's failures from this address (axes compares it to its limit)."""
        return _sum(self._recent(request, credentials).filter(ip_address=request.axes_ip_address))

    def account_failures(self, request, credentials: dict | None = None) -> int:
        """This user name's failures from every address."""
        return _sum(self._recent(request, credentials))

    def account_locked(self, request, credentials: dict | None = None) -> bool:
        locked = self.account_failures(request, credentials) >= settings.LOGIN_ACCOUNT_FAILURE_LIMIT
        if locked:
            request.console_account_locked = True  # the lockout page says which limit
        return locked

    def is_locked(self, request, credentials: dict | None = None) -> bool:
        return super().is_locked(request, credentials) or self.account_locked(request, credentials)

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs):
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None or getattr(request, "axes_locked_out", False):
            return
        if self.account_locked(request, credentials):
            request.axes_locked_out = True
            request.axes_credentials = credentials
            user_locked_out.send(
                "axes",
                request=request,
                username=get_client_username(request, credentials),
                ip_address=request.axes_ip_address,
            )
