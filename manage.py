#!/usr/bin/env python3
"""Django's command-line utility for the console.

On a fresh machine `python3 manage.py demo` and `python3 manage.py runtests` first create a
virtual environment in .venv and install the project into it (see dashboard/bootstrap.py), so
the README's two commands need nothing but Python 3.11+. Without DATABASE_URL every command
uses the embedded PostgreSQL that `demo` created.
"""

import os
import sys


def main() -> None:
    from dashboard.bootstrap import prepare

    prepare(sys.argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    from django.core.exceptions import ImproperlyConfigured

    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - reads the settings: a bad value stops here
    except ImproperlyConfigured as exc:
        # The settings' messages are one sentence naming the variable and what to do.
        sys.exit(f"manage.py: {exc}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
