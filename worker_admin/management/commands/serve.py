"""`python3 manage.py serve`: the console under gunicorn, the production server.

Collects the static files into STATIC_ROOT (whitenoise serves them, compressed, from the same
processes), then runs gunicorn in this process with dashboard/gunicorn_conf.py: gthread workers,
one per core with 4 threads each unless told otherwise. SIGTERM (or Ctrl-C) stops it
gracefully: workers finish the requests in flight, then everything exits with status 0.
"""

from __future__ import annotations

import os

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from gunicorn.app.base import BaseApplication

from dashboard import gunicorn_conf


class ConsoleServer(BaseApplication):
    """gunicorn with the console's settings and Django's WSGI application, no argv of its own."""

    def __init__(self, overrides: dict[str, object]) -> None:
        self.overrides = overrides
        super().__init__(prog="manage.py serve")

    def load_config(self) -> None:
        settings = dict(vars(gunicorn_conf))
        settings.update(self.overrides)
        for name, value in settings.items():
            if name in self.cfg.settings and value is not None:
                self.cfg.set(name, value)

    def load(self):
        from dashboard.wsgi import application

        return application


class Command(BaseCommand):
    help = "Serve the console with gunicorn (production): static files through whitenoise."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--bind", help=f"Address to listen on (SERVE_BIND, default {gunicorn_conf.bind})."
        )
        parser.add_argument(
            "--workers",
            type=int,
            help=f"Processes (WEB_CONCURRENCY, default {gunicorn_conf.workers}).",
        )
        parser.add_argument(
            "--threads",
            type=int,
            help=f"Threads per process (SERVE_THREADS, default {gunicorn_conf.threads}).",
        )
        parser.add_argument(
            "--nice",
            type=int,
            help="Lower the console's CPU priority by this much, 0 to 19 (SERVE_NICE, default "
            "0). On a host shared with busy workers or PostgreSQL, 10 lets them go first; on a "
            "host of its own it changes nothing.",
        )
        parser.add_argument(
            "--no-collectstatic",
            action="store_true",
            help="Skip collectstatic (when the deployment has already run it).",
        )

    def handle(self, *args, **options) -> None:
        if not os.environ.get("SECRET_KEY", "").strip():
            # demo and the embedded database fall back to a published development key; a
            # server that others can reach must never sign sessions with it.
            raise CommandError(
                "serve needs SECRET_KEY: set it to a long random value, e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`."
            )
        for name in ("workers", "threads"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name} must be at least 1.")
        nice = _nice(options["nice"])
        if not options["no_collectstatic"]:
            call_command("collectstatic", interactive=False, verbosity=0)
        # Workers are forked from this process: none may inherit an open database connection.
        connections.close_all()
        overrides = {name: options[name] for name in ("bind", "workers", "threads")}
        if nice:
            os.nice(nice)  # gunicorn's master and every worker it forks run at this priority
        ConsoleServer(overrides).run()


def _nice(given: int | None) -> int:
    """--nice, else SERVE_NICE, else 0; a whole number from 0 to 19."""
    if given is None:
        text = os.environ.get("SERVE_NICE", "").strip() or "0"
        try:
            given = int(text)
        except ValueError:
            message = f"SERVE_NICE must be a whole number from 0 to 19, not {text!r}."
            raise CommandError(message) from None
    if not 0 <= given <= 19:
        raise CommandError(f"--nice must be a whole number from 0 to 19, not {given}.")
    return given
