"""`python manage.py graphile_worker <command>`: the graphile-worker CLI's vocabulary.

Each subcommand is a small function taking the parsed options and the WorkerUtils; more
commands join `COMMANDS` as the console grows (GRAPHILE_WORKER.md §7).
"""

from __future__ import annotations

import json
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from worker_admin import databases
from worker_admin.audit import AuditEntry
from worker_admin.cli import history as history_commands
from worker_admin.cli import jobs as job_commands
from worker_admin.cli import recovery as recovery_commands
from worker_admin.cli.common import (
    os_user,
    record_rejection,
    require_audit_log,
    require_usable_schema,
)
from worker_admin.cli.parsing import UsageError
from worker_admin.cli.stats import stats as stats_command
from worker_admin.demo.fleet import DemoFleet, FleetRefused, check_demo_database
from worker_admin.installer import UnsupportedSchemaError
from worker_admin.operations import recovery_objects
from worker_admin.operations.errors import Refused
from worker_admin.utils import InvalidJobAction, InvalidJobSpec, WorkerUtils, WorkerUtilsError


def _console_tables(command: BaseCommand, options: dict) -> str:
    """Django's migrate for the console's own tables (audit log, users), for the console script."""
    if not options["console_tables"]:
        return ""
    call_command("migrate", interactive=False, verbosity=0, stdout=command.stderr)
    return f" The console's own tables in {settings.CONSOLE_SCHEMA} are up to date."


def _migrate(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    console_note = _console_tables(command, options)
    result = _migrate_worker_schema(utils, options)
    result["console_tables"] = bool(console_note)
    result["message"] += console_note
    return result


def _migrate_worker_schema(utils: WorkerUtils, options: dict) -> dict:
    if options["add_recovery"]:
        return _add_recovery(utils)
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


def _add_recovery(utils: WorkerUtils) -> dict:
    """Through the same operation as the page and the API (previewed and applied at once: the
    shell has no confirmation step), audited as the OS user in the change's transaction."""
    require_audit_log()
    actor = os_user()
    try:
        shown = recovery_objects.preview(actor, utils=utils)
        result = recovery_objects.apply(actor, shown.token, via=AuditEntry.Via.CLI)
    except recovery_objects.AlreadyPresent:
        message = "The worker-recovery objects were already present; nothing changed."
        return {"schema": utils.schema, "added_recovery": False, "message": message}
    except Refused as exc:
        raise CommandError(str(exc)) from None
    return {
        "schema": utils.schema,
        "added_recovery": result.added,
        "audit_entry_id": result.audit_entry_id,
        "message": "Added the worker-recovery objects.",
    }


def _demo_workers(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    """Simulated workers processing demo jobs until Ctrl-C or --duration (demo data only)."""
    for name in ("workers", "heartbeat", "jobs_per_second", "duration", "crash_one_after"):
        if options[name] is not None and options[name] < 0:
            raise CommandError(f"--{name.replace('_', '-')} must not be negative.")
    if options["heartbeat"] <= 0:
        raise CommandError("--heartbeat must be positive.")
    try:
        check_demo_database(utils.alias, utils.schema, force=options["force"])
    except FleetRefused as exc:
        # --force is this subcommand's own option (`demo` has none), so only it mentions it.
        raise CommandError(f"{exc} (--force to run anyway)") from None
    fleet = DemoFleet(
        utils=utils,
        workers=options["workers"],
        heartbeat_seconds=options["heartbeat"],
        jobs_per_second=options["jobs_per_second"],
        crash_one_after=options["crash_one_after"],
        # With --json, stdout holds only the JSON result.
        on_event=command.stderr.write if options["json"] else command.stdout.write,
    )
    fleet.start()
    deadline = None if options["duration"] is None else time.monotonic() + options["duration"]
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic())))
    except KeyboardInterrupt:
        command.stderr.write("Stopping the demo workers…")
    finally:
        fleet.stop()
    crashed = [w.id for w in fleet.workers if w.crashed]
    return {
        "workers": [w.id for w in fleet.workers],
        "crashed": crashed,
        "completed": fleet.completed,
        "failed": fleet.failed,
        "added": fleet.refiller.added if fleet.refiller else 0,
        "message": (
            f"Demo workers stopped: {fleet.completed} jobs completed, {fleet.failed} attempts "
            f"failed, {fleet.refiller.added if fleet.refiller else 0} jobs added"
            + (f"; crashed (left stale): {', '.join(crashed)}." if crashed else ".")
        ),
    }


COMMANDS = {
    "migrate": _migrate,
    "demo-workers": _demo_workers,
    "add": job_commands.add,
    "list": job_commands.list_jobs,
    "show": job_commands.show,
    "complete": job_commands.complete,
    "fail": job_commands.fail,
    "reschedule": job_commands.reschedule,
    "remove": job_commands.remove,
    "stats": stats_command,
    "cleanup": recovery_commands.cleanup,
    "force-unlock": recovery_commands.force_unlock,
    "sweep-stale-workers": recovery_commands.sweep_stale_workers,
    "queues": recovery_commands.queues,
    "workers": recovery_commands.workers,
    "record-history": history_commands.record_history,
}


# Subcommands that work without a usable schema: migrate installs one (and refuses a legacy
# schema with its own sentence). Every other one first checks the schema, so a missing or 0.15
# schema gives the web pages' sentence and exit status 2, never a traceback or a raw SQL error.
WITHOUT_SCHEMA = frozenset({"migrate"})

# Subcommands that change the queue, with the audit action each records: every write is
# audited, and so is every refusal of bad input to one.
AUDITED_WRITES = {
    "add": "add_job",
    "complete": "complete",
    "fail": "fail",
    "reschedule": "reschedule",
    "remove": "remove",
    "cleanup": "cleanup",
    "force-unlock": "force_unlock",
    "sweep-stale-workers": "sweep",
}


def _add_job_parsers(sub) -> None:
    add = sub.add_parser("add", help="Add a job.")
    add.add_argument("identifier", help="Task identifier.")
    add.add_argument("--payload", help="JSON payload (default: {}).")
    add.add_argument(
        "--payload-file", metavar="FILE", help="Read the JSON payload from FILE (- for stdin)."
    )
    add.add_argument("--queue", help="Named queue (jobs in it run one at a time).")
    add.add_argument("--run-at", help="RFC 3339 time with a time zone, or 'now' (default).")
    add.add_argument("--max-attempts", type=int, help="Attempts before failing (default 25).")
    add.add_argument("--key", help="Job key (deduplicates or replaces a pending job).")
    add.add_argument("--job-key-mode", help="replace (default), preserve-run-at or unsafe-dedupe.")
    add.add_argument("--priority", type=int, help="Lower runs first (default 0).")
    add.add_argument("--flag", action="append", help="A flag (repeatable).")

    listing = sub.add_parser("list", help="List jobs.")
    listing.add_argument(
        "--state", default="all", help="all (default), ready, scheduled, locked or failed."
    )
    listing.add_argument("--identifier", help="Only jobs of this task.")
    listing.add_argument("--queue", help="Only jobs in this queue.")
    listing.add_argument("--limit", type=int, default=50, help="At most this many (50).")
    listing.add_argument("--offset", type=int, default=0, help="Skip this many (0).")

    show = sub.add_parser("show", help="Show one job.")
    show.add_argument("id", help="Job id.")
    show.add_argument(
        "--reveal",
        action="store_true",
        help="Show payload fields that REDACT_PAYLOAD_PATHS hides (audited).",
    )

    complete = sub.add_parser("complete", help="Mark jobs as done (deletes them).")
    complete.add_argument("ids", nargs="*", metavar="ID", help="Job ids.")

    fail = sub.add_parser("fail", help="Fail jobs permanently.")
    fail.add_argument("ids", nargs="*", metavar="ID", help="Job ids.")
    fail.add_argument("--reason", help="Why (stored as last_error); required.")

    reschedule = sub.add_parser("reschedule", help="Change jobs' run_at, priority or attempts.")
    reschedule.add_argument("ids", nargs="*", metavar="ID", help="Job ids.")
    reschedule.add_argument("--now", action="store_true", help="Run at the database's now().")
    reschedule.add_argument("--run-at", help="RFC 3339 time with a time zone, or 'now'.")
    reschedule.add_argument("--priority", type=int, help="New priority.")
    reschedule.add_argument("--attempts", type=int, help="New attempts count.")
    reschedule.add_argument("--max-attempts", type=int, help="New max_attempts.")

    remove = sub.add_parser("remove", help="Remove the job holding a key.")
    remove.add_argument("key", help="Job key.")

    sub.add_parser("stats", help="Job counts by state, task and queue.")


def _add_recovery_parsers(sub) -> None:
    cleanup = sub.add_parser("cleanup", help="Delete failed jobs and unused task and queue rows.")
    cleanup.add_argument(
        "tasks",
        nargs="*",
        metavar="TASK",
        help="delete-permanently-failed-jobs, gc-task-identifiers, gc-job-queues (none = all).",
    )
    cleanup.add_argument(
        "--reason", help="Why (kept in the audit log); required to delete failed jobs."
    )

    unlock = sub.add_parser("force-unlock", help="Release every lock held by dead workers.")
    unlock.add_argument("worker_ids", nargs="*", metavar="WORKER_ID", help="Worker ids.")
    unlock.add_argument("--reason", help="Why (kept in the audit log).")

    sweep = sub.add_parser("sweep-stale-workers", help="Recover the jobs of dead workers.")
    sweep.add_argument(
        "--sweep-threshold", default="5m", help="Heartbeat age that makes a worker dead (5m)."
    )
    sweep.add_argument(
        "--recovery-delay", default="30s", help="Delay before recovered jobs run again (30s)."
    )
    sweep.add_argument("--dry-run", action="store_true", help="Report only; change nothing.")
    sweep.add_argument(
        "--include-node-lock-holders",
        action="store_true",
        help="Also recover orphan locks held by Node-looking worker ids.",
    )
    sweep.add_argument("--reason", help="Why (kept in the audit log).")

    sub.add_parser("queues", help="Named queues: job counts and locks.")

    workers = sub.add_parser("workers", help="Lock holders and registered workers.")
    workers.add_argument("--threshold", default="5m", help="Heartbeat age counted stale (5m).")


class Command(BaseCommand):
    help = "Operate a Graphile Worker schema (the graphile-worker CLI's commands)."
    # call_command(..., stdin=StringIO(...)) feeds `add --payload-file -` in tests.
    stealth_options = ("stdin",)
    # Django's own options still work; they are left out of the help, which is about the queue.
    suppressed_base_arguments = frozenset(
        {"--version", "--settings", "--pythonpath", "--traceback", "--no-color", "--force-color"}
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--schema", help="Worker schema (default: GRAPHILE_WORKER_SCHEMA).")
        parser.add_argument(
            "--database",
            metavar="NAME",
            help="Which worker database (a name from GRAPHILE_WORKER_DATABASES; default: the "
            "main one, GRAPHILE_WORKER_NAME).",
        )
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
        migrate.add_argument(
            "--console-tables",
            action="store_true",
            help="Also create or upgrade the console's own tables (audit log, users).",
        )
        demo = sub.add_parser(
            "demo-workers",
            help="Run simulated workers on demo data (register, heartbeat, lock, process).",
        )
        demo.add_argument("--workers", type=int, default=3, help="How many workers (default 3).")
        demo.add_argument(
            "--heartbeat", type=float, default=10.0, help="Seconds between heartbeats (10)."
        )
        demo.add_argument(
            "--jobs-per-second", type=float, default=2.0, help="New demo jobs per second (2)."
        )
        demo.add_argument(
            "--duration", type=float, help="Stop after this many seconds (default: Ctrl-C)."
        )
        demo.add_argument(
            "--crash-one-after",
            type=float,
            help="Kill one worker after this many seconds, leaving a stale worker and its lock.",
        )
        demo.add_argument(
            "--force", action="store_true", help="Run even though non-demo jobs exist."
        )
        _add_job_parsers(sub)
        _add_recovery_parsers(sub)
        history_commands.add_parser(sub)

    def handle(self, *args, **options) -> None:
        try:
            database = databases.get(options["database"] or settings.GRAPHILE_WORKER_NAME)
        except databases.UnknownDatabase as exc:
            raise UsageError(str(exc)) from None
        # Everything the command calls (operations, audit) acts on that database.
        with databases.using(database.name):
            self._handle(options)

    def _handle(self, options) -> None:
        utils = WorkerUtils(schema=options["schema"])
        subcommand = options["subcommand"]
        try:
            if subcommand not in WITHOUT_SCHEMA:
                require_usable_schema(utils)
            if subcommand in AUDITED_WRITES:
                require_audit_log()
            try:
                result = COMMANDS[subcommand](self, utils, options)
            except (InvalidJobSpec, InvalidJobAction) as exc:  # the values, not the database
                raise UsageError(str(exc)) from None
        except (UnsupportedSchemaError, WorkerUtilsError) as exc:
            raise CommandError(str(exc)) from None
        except UsageError as exc:
            if subcommand in AUDITED_WRITES:
                record_rejection(utils, AUDITED_WRITES[subcommand], options, str(exc))
            raise
        # "text" is the human rendering (tables); JSON leaves it out.
        text = result.pop("text", None)
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2, default=str))
        else:
            self.stdout.write(text if text is not None else result["message"])
