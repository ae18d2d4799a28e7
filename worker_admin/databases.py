"""Which Graphile Worker database a request, command or API call is about.

The console can watch several worker databases (GRAPHILE_WORKER_DATABASES, parsed by
dashboard/worker_databases.py). Everything that reads or writes the worker schema asks
`current()` for the Django alias and schema rather than reading a setting, so one code path
serves every database:

- a page or API call names its database in the URL, `/db/<name>/…`. `DatabasePrefix` strips
  that prefix before URL resolution and adds it to Django's script prefix, so every link the
  page renders (`{% url %}`, `reverse()`, redirects) carries the same database without any view
  knowing about it. With several databases, an unprefixed URL means the main one and its links
  carry `/db/<main>/`; with one, URLs stay as they always were;
- the command line takes `--database NAME`, the Python API `database=`; both call `using()`.

A database's entry may cap the role anyone has there (`max_role`) and limit who may open it
(`groups`); worker_admin/roles.py applies the cap, `DatabasePrefix` the groups.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpResponseForbidden, HttpResponseNotFound
from django.urls import get_script_prefix, set_script_prefix
from django.utils.html import escape

URL_PREFIX = "db/"
_current: ContextVar[str | None] = ContextVar("worker_database", default=None)


@dataclass(frozen=True)
class WorkerDatabase:
    name: str
    alias: str  # the Django alias (the primary: writes, previews and re-checks go here)
    schema: str
    max_role: str
    groups: tuple[str, ...]

    @property
    def is_main(self) -> bool:
        return self.name == settings.GRAPHILE_WORKER_NAME


class UnknownDatabase(LookupError):
    def __init__(self, name: str):
        known = ", ".join(names())
        super().__init__(f"There is no worker database called {name!r}; known: {known}.")


def names() -> list[str]:
    return list(settings.WORKER_DATABASES)


def several() -> bool:
    return len(settings.WORKER_DATABASES) > 1


def get(name: str) -> WorkerDatabase:
    entry = settings.WORKER_DATABASES.get(name)
    if entry is None:
        raise UnknownDatabase(name)
    return WorkerDatabase(name, entry["alias"], entry["schema"], entry["max_role"], entry["groups"])


def every() -> list[WorkerDatabase]:
    return [get(name) for name in names()]


def main() -> WorkerDatabase:
    return get(settings.GRAPHILE_WORKER_NAME)


def current() -> WorkerDatabase:
    """The database this request, command or call is about (the main one unless told)."""
    name = _current.get()
    return get(name) if name is not None else main()


@contextlib.contextmanager
def using(name: str | None) -> Iterator[WorkerDatabase]:
    """Act on database `name` (None: the main one) inside the block."""
    database = get(name) if name is not None else main()
    token = _current.set(database.name)
    try:
        yield database
    finally:
        _current.reset(token)


def may_open(user, database: WorkerDatabase) -> bool:
    """Superusers open every database; a database with `groups` only for their members."""
    if not database.groups or user.is_superuser:
        return True
    return user.groups.filter(name__in=database.groups).exists()


def url_in(request, database: WorkerDatabase, path_info: str) -> str:
    """The URL of `path_info` (a path without any /db/ prefix) in `database`."""
    root = getattr(request, "console_script_prefix", "/")
    if not several():
        return root.rstrip("/") + path_info
    return f"{root}{URL_PREFIX}{database.name}{path_info}"


def switcher(request, section_path: str) -> list[dict]:
    """The header's database selector: each database this user may open, with the URL of the
    same section there (a job id means nothing in another database, so the section's list)."""
    user = request.user
    return [
        {
            "name": database.name,
            "url": url_in(request, database, section_path),
            "current": database.name == current().name,
            "max_role": database.max_role,
        }
        for database in every()
        if may_open(user, database)
    ]


def _split(path_info: str) -> tuple[str | None, str]:
    """("billing", "/jobs/") for "/db/billing/jobs/"; (None, path) when unprefixed."""
    head = "/" + URL_PREFIX
    if not path_info.startswith(head):
        return None, path_info
    name, slash, rest = path_info[len(head) :].partition("/")
    return name, "/" + rest if slash else "/"


class DatabasePrefix:
    """Middleware: read `/db/<name>/` off the path, act on that database, link within it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name, rest = _split(request.path_info)
        if name is None:
            database = main()
        else:
            try:
                database = get(name)
            except UnknownDatabase as error:
                return HttpResponseNotFound(
                    f"<!doctype html><title>Unknown database</title><p>{escape(error)}</p>"
                )
            request.path_info = rest
        saved_prefix = get_script_prefix()
        request.console_script_prefix = saved_prefix
        if several():
            set_script_prefix(f"{saved_prefix}{URL_PREFIX}{database.name}/")
        request.worker_database = database
        token = _current.set(database.name)
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)
            set_script_prefix(saved_prefix)

    def process_view(self, request, view_func, view_args, view_kwargs):
        database = getattr(request, "worker_database", None)
        user = getattr(request, "user", None)
        if database is None or user is None or not user.is_authenticated:
            return None  # the login requirement answers first
        if may_open(user, database):
            return None
        return HttpResponseForbidden(
            "<!doctype html><title>Not allowed</title><p>"
            + escape(
                f"The worker database {database.name!r} is open to members of "
                f"{', '.join(database.groups)} only; you are signed in as "
                f"{user.get_username()}. Ask an admin."
            )
            + "</p>"
        )
