"""Monitoring endpoints: /healthz for load balancers, /metrics for Prometheus.

Neither needs a login. /healthz is open and says only whether the database answers and the
worker schema is there, and how the read replica fares when one is configured (a replica that
is down or too far behind does not make the console unhealthy: it reads from the primary).
/metrics tells more about the queue (task and queue names), so it answers a request bearing
METRICS_TOKEN, or one whose client address (worker_admin.client_address: the socket's peer, or
behind TRUSTED_PROXY_COUNT proxies the address they forwarded) is in METRICS_ALLOWED_NETWORKS,
and refuses the rest with a one-line reason. A reverse proxy on the same host connects from
127.0.0.1: its requests are judged by the address it forwards, never by its own.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from functools import lru_cache

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connections
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.exposition import choose_encoder

from worker_admin import databases, replica
from worker_admin.client_address import client_address
from worker_admin.installer import Flavour
from worker_admin.metrics import scrape_registry
from worker_admin.schema import capabilities

logger = logging.getLogger(__name__)


# -- /healthz ------------------------------------------------------------------------------


def _database_answers() -> bool:
    """A round trip on every database the console uses (one, unless CONSOLE_DATABASE_URL)."""
    for alias in dict.fromkeys(["default", databases.current().alias]):
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            logger.warning("/healthz: database %r does not answer: %s", alias, exc)
            return False
    return True


def _other_database_status(database) -> str:
    with databases.using(database.name):
        try:
            caps = capabilities()
        except DatabaseError:
            return "unreachable"
        return _schema_problem(caps.flavour, caps.usable) or "ok"


def _schema_problem(flavour: Flavour, usable: bool) -> str | None:
    if flavour is Flavour.ABSENT:
        return "schema not found"
    if flavour is Flavour.LEGACY:
        return "schema unsupported"
    if not usable:
        return "schema unreadable"  # the connected role cannot read the jobs
    return None


@login_not_required
@never_cache
@require_safe
def healthz(request):
    body = {
        "status": "ok",
        "database": "ok",
        "schema": settings.GRAPHILE_WORKER_SCHEMA,
        "flavour": None,
        # The read replica's state (worker_admin/replica.py). Informational: with the replica
        # down the console reads from the primary, so it stays healthy and this stays 200.
        "replica": replica.status().as_json(),
    }
    if not _database_answers():
        body.update(status="database unreachable", database="unreachable")
        return JsonResponse(body, status=503)
    try:
        caps = capabilities()
    except DatabaseError as exc:  # the database went away between the two reads
        logger.warning("/healthz: cannot read the catalog: %s", exc)
        body.update(status="database unreachable", database="unreachable")
        return JsonResponse(body, status=503)
    body["flavour"] = caps.flavour.value
    if databases.several():
        # Informational, like the replica: one service's database being down does not make
        # the console unhealthy for the others (the overview shows which one).
        body["databases"] = {d.name: _other_database_status(d) for d in databases.every()}
    problem = _schema_problem(caps.flavour, caps.usable)
    if problem is not None:
        body["status"] = problem
        return JsonResponse(body, status=503)
    return JsonResponse(body)


# -- /metrics ------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            logger.error("METRICS_ALLOWED_NETWORKS: %r is not a network; it is ignored.", entry)
    return tuple(networks)


def _address_allowed(remote_addr: str) -> bool:
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket
    networks = _networks(tuple(settings.METRICS_ALLOWED_NETWORKS))
    return any(address in network for network in networks)


def _digest(token: str) -> bytes:
    # Equal-length digests: compare_digest then takes the same time whatever the token's length.
    return hashlib.sha256(token.encode()).digest()


def metrics_refusal(request) -> str | None:
    """Why this request may not read /metrics, or None when it may.

    A bearer token, when one is configured and presented, decides alone: a wrong one is
    refused even from an allowed network, so that a scraper with a stale token is noticed.
    """
    token = settings.METRICS_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and presented.strip():
        if hmac.compare_digest(_digest(presented.strip()), _digest(token)):
            return None
        return "The bearer token is not the metrics token."
    client = client_address(request)
    if client.doubt is not None:
        return (
            f"Metrics refused this request: {client.doubt}. "
            "Set TRUSTED_PROXY_COUNT to the number of proxies, or send the metrics token."
        )
    if _address_allowed(client.address):
        return None
    if token:
        return "Metrics need the metrics bearer token, or a request from an allowed network."
    return "Metrics are served only to the networks in METRICS_ALLOWED_NETWORKS."


@login_not_required
@never_cache
@require_safe
def metrics(request):
    refusal = metrics_refusal(request)
    if refusal is not None:
        return HttpResponse(refusal + "\n", status=403, content_type="text/plain; charset=utf-8")
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(scrape_registry()), content_type=content_type)
