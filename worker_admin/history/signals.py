"""Recording from requests: the first console request to finish once a snapshot is due takes it.

Cheap when not due: a per-process clock says when to look next, so most requests return from
here without touching the database. When due, the recorder's advisory lock (recorder.py) makes
sure that of several processes (or threads) looking at once, one records and the rest move on
without waiting. The snapshot is taken after the response has gone out (request_finished), so
no page waits for it.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError

from worker_admin.audit import first_line

logger = logging.getLogger(__name__)
_next_look = 0.0
_guard = threading.Lock()


def on_request_finished(sender, **kwargs) -> None:
    global _next_look
    if not settings.HISTORY_RECORD_ON_REQUEST:
        return
    now = time.monotonic()
    with _guard:
        if now < _next_look:
            return
        _next_look = now + settings.HISTORY_INTERVAL_SECONDS
    from worker_admin import databases
    from worker_admin.history.recorder import record_if_due

    for database in databases.every():  # each worker database has its own history
        try:
            with databases.using(database.name):
                record_if_due()
        except DatabaseError as exc:  # the database is down or busy: the pages already say so
            logger.warning(
                "Could not record a history snapshot of %s: %s", database.name, first_line(exc)
            )
        except Exception:  # history is a convenience: never turn a served request into an error
            logger.warning("Could not record a history snapshot.", exc_info=True)
    # A connection reopened here is closed (or kept, within CONN_MAX_AGE) by Django's own
    # close_old_connections when this thread's next request starts, like any other.


def connect() -> None:
    from django.core.signals import request_finished

    request_finished.connect(on_request_finished, dispatch_uid="worker_admin.history")
