"""`graphile-console`: the graphile_worker command as a console script, usable anywhere.

`pip install` puts it on PATH; it needs no project folder and no manage.py. The global options
of the graphile-worker CLI come first and are read before Django starts, because they decide
the settings: `--database-url` (else DATABASE_URL) and `--schema` (else GRAPHILE_WORKER_SCHEMA),
so that every command, reads included, works on any schema.

Exit status: 0 done, 1 failed (the database refused, a job is missing, …), 2 bad usage (unknown
option or state, bad duration, malformed JSON payload, no ids) or a schema the console cannot
operate (missing, graphile-worker 0.15 or older, unreadable: the web pages' sentence). Errors
go to stderr as one sentence prefixed with the program name.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

PROG = "graphile-console"
EXIT_DONE, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _global_options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog=PROG, add_help=False, allow_abbrev=False)
    parser.add_argument("--database-url")
    parser.add_argument("--schema")
    return parser.parse_known_args(argv)


def _configure(options: argparse.Namespace, rest: list[str]) -> str | None:
    """Export the settings Django reads at start; a problem is returned as a sentence."""
    if options.database_url:
        os.environ["DATABASE_URL"] = options.database_url
    if options.schema:
        os.environ["GRAPHILE_WORKER_SCHEMA"] = options.schema
    if not os.environ.get("DATABASE_URL"):
        if not {"-h", "--help"} & set(rest):
            return "give --database-url or set DATABASE_URL."
        os.environ["DATABASE_URL"] = "postgresql:///help-needs-no-database"  # never connected
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    # The CLI signs nothing that outlives the process, so a one-off key is enough; the web
    # console still refuses to start without a configured SECRET_KEY.
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    return None


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options, rest = _global_options(argv)
    problem = _configure(options, rest)
    if problem:
        return _fail(problem, EXIT_USAGE)

    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        return _fail(str(exc), EXIT_USAGE)
    return _run(rest)


def _run(argv: list[str]) -> int:
    from django.core.management.base import CommandError
    from django.db import DatabaseError, OperationalError

    from worker_admin.audit import first_line
    from worker_admin.cli.common import SchemaProblem
    from worker_admin.management.commands.graphile_worker import Command

    command = Command()
    command._called_from_command_line = True  # argparse errors exit 2 with the usage line
    parser = command.create_parser(PROG, "")
    parser.prog = PROG
    # Read before Django started (_global_options); declared again so that --help lists it.
    parser.add_argument("--database-url", help="The worker database (default: DATABASE_URL).")
    parsed = vars(parser.parse_args(argv))
    parsed.pop("args", None)
    parsed["skip_checks"] = True  # system checks are for the web server, not for one command
    try:
        command.execute(**parsed)
    except SchemaProblem as exc:  # word for word the sentence the web pages show
        return _fail(str(exc), exc.returncode)
    except CommandError as exc:
        return _fail(_sentence(exc), exc.returncode)
    except OperationalError as exc:
        return _fail(f"cannot reach the database: {first_line(exc)}", EXIT_FAILED)
    except DatabaseError as exc:
        return _fail(f"the database refused the command: {first_line(exc)}", EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted.", 130)
    return EXIT_DONE


def _sentence(exc: Exception) -> str:
    text = str(exc).strip()
    return text[:1].lower() + text[1:] if text else "failed."


if __name__ == "__main__":  # pragma: no cover - `python -m worker_admin.cli.entry`
    sys.exit(main())
