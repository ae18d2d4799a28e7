"""`python3 manage.py demo`: the console on demo data, in one command.

Without DATABASE_URL the bootstrap in manage.py has started the embedded PostgreSQL. This
command migrates the console's tables and the worker schema, seeds demo jobs and workers into
an empty queue (never into one that holds jobs, unless --seed-anyway; --reset empties the
embedded database first), creates the `demo` login with a fresh password that it prints,
keeps the seeded demo workers heartbeating, starts a simulated fleet (worker_admin/demo/fleet.py:
3 workers that lock and process demo jobs, one of which crashes after 90 s to leave a stale
worker) and serves the console on http://127.0.0.1:8000.
"""

from __future__ import annotations

import secrets
import threading
import time

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections, connections
from psycopg import sql
from psycopg.conninfo import make_conninfo

from worker_admin import databases
from worker_admin.demo.fleet import DemoFleet, FleetRefused, check_demo_database
from worker_admin.demo.seed import keep_heartbeating, seed_demo
from worker_admin.models import Job, Worker
from worker_admin.utils import WorkerUtils

HEARTBEAT_SECONDS = 20
FLEET_WORKERS = 3
CRASH_ONE_AFTER_SECONDS = 90


class Command(BaseCommand):
    help = "Serve the console on demo data (embedded PostgreSQL unless DATABASE_URL is set)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Where to serve.")
        parser.add_argument("--jobs", type=int, default=2400, help="How many demo jobs to add.")
        parser.add_argument(
            "--seed-anyway",
            action="store_true",
            help="Add demo jobs even though the queue already holds jobs.",
        )
        parser.add_argument("--no-serve", action="store_true", help="Prepare, then exit.")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Empty the embedded database first and start afresh (not with DATABASE_URL).",
        )
        # Taken by the bootstrap in manage.py before this parser runs; listed here for --help.
        parser.add_argument(
            "--keep-db",
            action="store_true",
            help="Leave the embedded PostgreSQL running after the demo stops.",
        )

    def handle(self, *args, **options) -> None:
        if options["reset"]:
            self._reset()
        call_command("migrate", interactive=False, verbosity=0)
        utils = WorkerUtils()
        result = utils.migrate(recovery=True)
        self.stdout.write(f"Worker schema {utils.schema}: {result.flavour_after.value}.")
        healthy = self._seed(utils, options)
        others = [self._prepare_other(database, options) for database in databases.every()[1:]]
        password = self._demo_login()
        if options["no_serve"]:
            return
        if healthy:
            self._start_heartbeats(utils, healthy)
        fleet = self._start_fleet(utils)
        for other_utils, other_healthy in others:
            if other_healthy:
                self._start_heartbeats(other_utils, other_healthy)
        self.stdout.write(
            self.style.SUCCESS(
                f"\nConsole: http://{options['addr']}/   user: demo   password: {password}\n"
            )
        )
        try:
            call_command("runserver", options["addr"], use_reloader=False)
        finally:
            if fleet is not None:
                fleet.stop()  # deregister the live simulated workers (the crashed one stays)

    def _prepare_other(self, database, options: dict) -> tuple[WorkerUtils, list[str]]:
        """Another worker database of the demo (GRAPHILE_WORKER_DATABASES): created on the
        embedded server if missing, migrated, and seeded with a quarter of the jobs when empty."""
        if settings.EMBEDDED:
            self._create_database(settings.DATABASES[database.alias]["NAME"])
        utils = WorkerUtils(database=database.name)
        result = utils.migrate(recovery=True)
        self.stdout.write(
            f"Worker database {database.name}, schema {utils.schema}: {result.flavour_after.value}."
        )
        with databases.using(database.name):
            healthy = self._seed(utils, {**options, "jobs": max(1, options["jobs"] // 4)})
        return utils, healthy

    def _server(self):
        db = settings.DATABASES["default"]
        server = make_conninfo(
            host=db["HOST"], port=str(db["PORT"] or ""), user=db["USER"], dbname="template1"
        )
        return psycopg.connect(server, autocommit=True)

    def _create_database(self, name: str) -> None:
        with self._server() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def _reset(self) -> None:
        """Drop and recreate the embedded demo database (sessions of a running demo included)."""
        if not settings.EMBEDDED:
            raise CommandError(
                "--reset empties only the embedded demo database; with DATABASE_URL set, "
                "nothing was changed."
            )
        names = [settings.DATABASES["default"]["NAME"]]
        names += [settings.DATABASES[d.alias]["NAME"] for d in databases.every()[1:]]
        connections.close_all()
        with self._server() as conn:
            for name in names:
                database = sql.Identifier(name)
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(database))
                self.stdout.write(f"Emptied the embedded database {name}.")

    def _start_fleet(self, utils: WorkerUtils) -> DemoFleet | None:
        try:
            check_demo_database(utils.alias, utils.schema)
        except FleetRefused as exc:
            self.stdout.write(f"Not starting the simulated workers: {exc}")
            return None
        fleet = DemoFleet(
            utils=utils,
            workers=FLEET_WORKERS,
            crash_one_after=CRASH_ONE_AFTER_SECONDS,
            on_event=self.stdout.write,
        ).start()
        self.stdout.write(
            f"Simulated workers are processing demo jobs; one crashes in "
            f"{CRASH_ONE_AFTER_SECONDS} s and becomes a stale worker."
        )
        return fleet

    def _seed(self, utils: WorkerUtils, options: dict) -> list[str]:
        existing = Job.objects.using(utils.alias).exists()
        if existing and not options["seed_anyway"]:
            self.stdout.write("The queue already holds jobs; not adding demo data (--seed-anyway).")
            # Resume the demo fleet: the longest-silent worker keeps playing the crashed one.
            # Simulated fleet workers of earlier runs are not part of the seed's fleet.
            registered = (
                Worker.objects.using(utils.alias)
                .filter(id__startswith="graphile_worker_")
                .exclude(metadata__has_key="simulated")
                .order_by("last_heartbeat_at")
            )
            return [w.id for w in registered][1:]
        if options["jobs"] < 1 or options["jobs"] > 200_000:
            raise CommandError("--jobs must be between 1 and 200000.")
        seeded = seed_demo(utils, jobs=options["jobs"])
        self.stdout.write(
            f"Seeded {seeded.jobs} demo jobs, {len(seeded.healthy_workers) + 1} registered workers "
            f"(one stale: {seeded.stale_worker}) and an orphan lock ({seeded.orphan_lock_holder})."
        )
        return seeded.healthy_workers

    def _demo_login(self) -> str:
        password = secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username="demo")
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def _start_heartbeats(self, utils: WorkerUtils, workers: list[str]) -> None:
        keep_heartbeating(utils.alias, utils.schema, workers)  # at once, then every 20 s

        def beat() -> None:
            while True:
                time.sleep(HEARTBEAT_SECONDS)
                try:
                    keep_heartbeating(utils.alias, utils.schema, workers)
                except Exception as exc:  # the database may be restarting; try again later
                    self.stderr.write(f"demo heartbeat failed: {exc}")
                finally:
                    close_old_connections()

        threading.Thread(target=beat, name="demo-heartbeats", daemon=True).start()
