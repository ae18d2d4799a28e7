"""Who is asking: the one rule for "the client's address", used by login throttling (django-axes)
and by /metrics' network check.

Without a proxy the client is the socket's peer (REMOTE_ADDR), and X-Forwarded-For is text the
client wrote: it proves nothing. Behind TRUSTED_PROXY_COUNT proxies every request comes from the
last proxy; each proxy appends the address it saw to X-Forwarded-For, so the client is the entry
TRUSTED_PROXY_COUNT places from the right (earlier entries the client may forge).

The count is never guessed (it defaults to 0): a count too low makes every client look like the
proxy, one too high lets the client pick its address. `doubt` says when the request itself shows
the count cannot be right, so that /metrics refuses rather than trusting the proxy's address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientAddress:
    address: str  # what the console counts as the client's address ("" when the socket has none)
    doubt: str | None = None  # why that may be a proxy's address rather than the client's


def forwarded_for(request) -> list[str]:
    """The X-Forwarded-For entries, left to right, blanks dropped."""
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    return [part.strip() for part in header.split(",") if part.strip()]


def client_address(request) -> ClientAddress:
    count = settings.TRUSTED_PROXY_COUNT  # read per request, so a test may change it
    remote = request.META.get("REMOTE_ADDR") or ""
    forwarded = forwarded_for(request)
    if not count:
        if forwarded:
            return ClientAddress(
                remote,
                "it came through a proxy (it carries X-Forwarded-For) while TRUSTED_PROXY_COUNT "
                "is 0, so the console cannot tell the client's address",
            )
        return ClientAddress(remote)
    if len(forwarded) >= count:
        return ClientAddress(forwarded[-count])
    if not forwarded:
        # Past the proxy (a scraper on the same host), or a proxy that does not append the
        # header (then every client looks like the proxy): logged, since the second is a fault.
        logger.warning(
            "TRUSTED_PROXY_COUNT is %s but a request from %s carries no X-Forwarded-For: it "
            "bypassed the proxy, or the proxy does not append the header.",
            count,
            remote or "an unknown address",
        )
    entries = f"{len(forwarded)} X-Forwarded-For entr{'y' if len(forwarded) == 1 else 'ies'}"
    return ClientAddress(
        remote,
        f"it carries {entries} while TRUSTED_PROXY_COUNT is {count}, "
        "so the console cannot tell the client's address",
    )


def axes_client_ip(request) -> str:
    """AXES_CLIENT_IP_CALLABLE: the address login failures are counted against."""
    return client_address(request).address
