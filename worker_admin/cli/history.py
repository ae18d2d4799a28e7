"""The `record-history` subcommand: the history recorder as a process of its own.

For deployments where nobody has the console open: it records a snapshot every interval
(worker_admin/history/recorder.py) until Ctrl-C or --duration. Running it beside busy console
processes is harmless: whoever holds the recorder's lock records, the others skip.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, connections

from worker_admin.audit import first_line
from worker_admin.cli.parsing import UsageError
from worker_admin.history.recorder import record_if_due
from worker_admin.utils import WorkerUtils


def add_parser(sub) -> None:
    record = sub.add_parser(
        "record-history", help="Record history snapshots (for the charts) until stopped."
    )
    record.add_argument(
        "--interval",
        type=float,
        help="Seconds between snapshots (default HISTORY_INTERVAL_SECONDS).",
    )
    record.add_argument(
        "--once", action="store_true", help="Record one snapshot if due, then stop."
    )
    record.add_argument("--duration", type=float, help="Stop after this many seconds.")


def record_history(command: BaseCommand, utils: WorkerUtils, options: dict) -> dict:
    interval = options["interval"]
    if interval is None:
        interval = float(settings.HISTORY_INTERVAL_SECONDS)
    if interval <= 0 or (options["duration"] is not None and options["duration"] < 0):
        raise UsageError("--interval must be positive and --duration not negative.")
    if utils.schema != settings.GRAPHILE_WORKER_SCHEMA:
        raise UsageError(
            "record-history records the schema the console shows: set GRAPHILE_WORKER_SCHEMA "
            "(or graphile-console --schema) rather than this command's --schema."
        )
    say = command.stderr.write if options["json"] else command.stdout.write
    recorded = skipped = 0
    deadline = None if options["duration"] is None else time.monotonic() + options["duration"]
    try:
        while True:
            started = time.monotonic()
            try:
                # No alias: as from a request, the counts come from the replica while it is
                # in use and the table statistics from the primary (utils.alias is the
                # current database's primary, which record_if_due finds itself).
                outcome = record_if_due(interval=interval)
            except DatabaseError as exc:
                if options["once"]:
                    raise
                # A restart or failover must not end a long-running recorder: say so, drop the
                # broken connections and try again next round (the gap will show on the charts).
                command.stderr.write(f"Could not record a snapshot: {first_line(exc)}")
                connections.close_all()
                outcome = None
            if outcome is None:
                skipped += 1
            elif outcome.snapshot is not None:
                recorded += 1
                say(_line(outcome.snapshot))
            else:
                skipped += 1
            if options["once"] or (deadline is not None and time.monotonic() >= deadline):
                break
            pause = max(0.0, interval - (time.monotonic() - started))
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)
    except KeyboardInterrupt:
        command.stderr.write("Stopping the history recorder…")
    message = f"Recorded {recorded} snapshot{'s' if recorded != 1 else ''}"
    message += f" ({skipped} skipped: not due or taken by another process)." if skipped else "."
    return {"recorded": recorded, "skipped": skipped, "interval": interval, "message": message}


def _line(snapshot) -> str:
    def show(value) -> str:
        return "?" if value is None else str(value)

    return (
        f"{snapshot.taken_at:%Y-%m-%d %H:%M:%S} added {show(snapshot.added)}, "
        f"deleted {show(snapshot.deleted)}, failed {show(snapshot.failed)}"
        f"{' (counts taken)' if snapshot.counts is not None else ''} "
        f"in {snapshot.duration_ms:.1f} ms"
    )
