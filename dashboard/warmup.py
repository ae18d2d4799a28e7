"""A new server process gets ready before it takes its first request.

Django imports the views when the first request resolves a URL, compiles each template the
first time it renders it (then keeps it: the cached loader), and the console checks what the
worker schema can do on the first page that reads it. Each gunicorn worker pays all of that
once, so without this the first person to open any page after a deploy or a worker's recycling
(`max_requests`) waited for it: 100–300 ms on a page that otherwise answers in 20.

`warm()` does it in the worker's own start (gunicorn's `post_worker_init`), before the worker
accepts connections. Nothing here is needed for correctness: a failure (the database is down
while the console starts) is logged and the request that comes first does the work as before.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.template import TemplateDoesNotExist, TemplateSyntaxError
from django.template.loader import get_template
from django.urls import get_resolver

logger = logging.getLogger(__name__)


def warm() -> None:
    get_resolver().url_patterns  # noqa: B018 (importing the URLconf imports every view)
    for name in template_names():
        try:
            get_template(name)
        except (TemplateDoesNotExist, TemplateSyntaxError):
            logger.warning("Could not load template %s while warming up.", name, exc_info=True)
    try:
        _check_schema()
    except Exception:  # the database may be away while the console starts: not our concern here
        logger.warning("Could not read the worker schema while warming up.", exc_info=True)
    finally:
        connections.close_all()  # requests run on other threads, with connections of their own


def template_names() -> list[str]:
    """Every template the project's template folders (TEMPLATES' DIRS) hold, by loader name."""
    folders = [Path(folder) for template in settings.TEMPLATES for folder in template["DIRS"]]
    names = set()
    for folder in folders:
        if folder.is_dir():
            names.update(str(path.relative_to(folder)) for path in folder.rglob("*.html"))
    return sorted(names)


def _check_schema() -> None:
    """The capability check every page starts with (cached per process, worker_admin/schema.py)."""
    from worker_admin.schema import read_capabilities

    read_capabilities()
