"""Values every page's layout needs: navigation, the schema banner, read-only mode, polling."""

from __future__ import annotations

from django.conf import settings
from django.db import DatabaseError
from django.urls import get_script_prefix, reverse
from django.utils.functional import SimpleLazyObject

from worker_admin import databases, replica
from worker_admin.roles import can_act_on_jobs, may_manage_users
from worker_admin.schema import capabilities

NAVIGATION = [
    ("overview", "Overview", "worker_admin:overview"),
    ("jobs", "Jobs", "worker_admin:jobs"),
    ("failures", "Failures", "worker_admin:failures"),
    ("queues", "Queues", "worker_admin:queues"),
    ("tasks", "Tasks", "worker_admin:tasks"),
    ("workers", "Workers", "worker_admin:workers"),
    ("crons", "Crons", "worker_admin:crons"),
    ("history", "History", "worker_admin:history"),
    ("maintenance", "Maintenance", "worker_admin:maintenance"),
    ("audit", "Audit", "worker_admin:audit"),
]


def _capabilities_or_none():
    # Evaluated when the layout renders, after the view read: the capabilities of the server
    # the page's reads went to (the replica's, while in use), else the primary's.
    try:
        return capabilities(replica.chosen_alias())
    except DatabaseError:
        return None  # the page itself reports the database error


def database_switcher(request, active: str | None) -> list[dict]:
    """The header's database selector (worker_admin/templatetags/console_layout.py)."""
    if not databases.several() or not getattr(request, "user", None):
        return []
    section = {key: url_name for key, _label, url_name in NAVIGATION}.get(active or "")
    path = "/"
    if section:
        # The section's list in this database, without the /db/<name>/ prefix.
        path = "/" + reverse(section)[len(get_script_prefix()) :]
    return databases.switcher(request, path)


def console(request) -> dict:
    user = getattr(request, "user", None)
    return {
        "worker_database": databases.current(),
        "several_databases": databases.several(),
        # Lazy: permission checks query the database, and error pages must render without it.
        "can_act": SimpleLazyObject(
            lambda: bool(user and user.is_authenticated and can_act_on_jobs(user))
        ),
        # Admins manage users and roles on Django's admin site; the header links to it.
        "can_manage_users": SimpleLazyObject(
            lambda: bool(user and user.is_authenticated and may_manage_users(user))
        ),
        "navigation": NAVIGATION,
        "capabilities": SimpleLazyObject(_capabilities_or_none),
        "read_only": settings.READ_ONLY,
        "poll_interval": settings.POLL_INTERVAL_SECONDS,
        "worker_schema": settings.GRAPHILE_WORKER_SCHEMA,
        # Lazy: read when the layout renders, after the view chose where to read from.
        "replica": SimpleLazyObject(replica.chosen),
    }
