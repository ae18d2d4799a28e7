"""System checks for settings that cannot all be right together (`manage.py check`)."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register


@register("security", deploy=False)
def proxy_trust(app_configs=None, **kwargs) -> list[Warning]:
    """HTTPS=1 trusts X-Forwarded-Proto, so the console sits behind a proxy; with no proxy
    trusted for X-Forwarded-For, every client then has the proxy's address: the login
    throttle locks everyone out together, and /metrics refuses forwarded requests."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) and not settings.TRUSTED_PROXY_COUNT:
        return [
            Warning(
                "HTTPS=1 expects a TLS proxy in front of the console (SECURE_PROXY_SSL_HEADER), "
                "but TRUSTED_PROXY_COUNT is 0, so every client would have the proxy's address.",
                hint="Set TRUSTED_PROXY_COUNT to the number of proxies that append to "
                "X-Forwarded-For (usually 1).",
                id="console.W001",
            )
        ]
    return []
