"""`python manage.py graphile_worker <command>`: the graphile-worker CLI's vocabulary.

Each subcommand is a small function taking the parsed options and the WorkerUtils; more
commands join `COMMANDS` as the console grows (GRAPHILE_WORKER.md §7).
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from worker_admin.installer import UnsupportedSchemaError
from worker_admin.utils import WorkerUtils, WorkerUtilsError


def _migrate(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    if options["add_recovery"]:
        added = utils.add_recovery()
        message = (
            "Added the worker-recovery objects."
            if added
            else "The worker-recovery objects were already present; nothing changed."
        )
        return {"schema": utils.schema, "added_recovery": added, "message": message}
    result = utils.migrate(recovery=not options["no_recovery"])
    if result.installed_core:
        message = f"Installed the Graphile Worker schema {utils.schema}"
        message += " with the worker-recovery extension." if result.added_recovery else "."
    elif result.added_recovery:
        message = f"Added the worker-recovery extension to {utils.schema}."
    else:
        message = (
            f"Schema {utils.schema} is up to date ({result.flavour_after.value}); nothing changed."
        )
    return {
        "schema": utils.schema,
        "flavour_before": result.flavour_before.value,
        "flavour_after": result.flavour_after.value,
        "installed_core": result.installed_core,
        "added_recovery": result.added_recovery,
        "message": message,
    }


COMMANDS = {"migrate": _migrate}


class Command(BaseCommand):
    help = "Operate a Graphile Worker schema (the graphile-worker CLI's commands)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--schema", help="Worker schema (default: GRAPHILE_WORKER_SCHEMA).")
        parser.add_argument("--json", action="store_true", help="Machine-readable output.")
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
        migrate = sub.add_parser("migrate", help="Install or upgrade the worker schema.")
        group = migrate.add_mutually_exclusive_group()
        group.add_argument(
            "--add-recovery",
            action="store_true",
            help="Only add the Rust worker-recovery objects to a schema Node already installed.",
        )
        group.add_argument(
            "--no-recovery",
            action="store_true",
            help="Install the plain node schema, without the worker-recovery extension.",
        )

    def handle(self, *args, **options) -> None:
        utils = WorkerUtils(schema=options["schema"])
        try:
            result = COMMANDS[options["subcommand"]](self, utils, options)
        except (UnsupportedSchemaError, WorkerUtilsError) as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, default=str))
        else:
            self.stdout.write(result["message"])
