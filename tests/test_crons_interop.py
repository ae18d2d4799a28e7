"""Our crontab parser against the real one: graphile-worker 0.18.0's parseCrontab, run in Node
(tests/node/interop/parse_crontab.mjs) on the same lines. Accepted or refused, identifier, task,
options, payload and the time fields' values must agree, and croniter's due times (from our
normalised schedule) must be the minutes the workers' own matcher fires on."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from tests.nodejs import CLI_TIMEOUT, ensure_graphile_worker
from tests.test_interop import (
    INTEROP_DIR,
    STARTUP_TIMEOUT,
    node_database_url,
    running_node_worker,
    wait_for,
)
from worker_admin import crons
from worker_admin.crontab import parse_crontab

pytestmark = pytest.mark.node

START = datetime(2026, 2, 27, 23, 58, 30, tzinfo=UTC)  # across a month end, 2026 not leap
DUE = 6

LINES = [
    "* * * * * every_minute",
    "*/5 * * * * ping_hosts",
    "0 4 * * * send_digest ?id=nightly_digest",
    "30 2 * * 1-5 weekdays ?queue=reports&priority=-3&max=7",
    "0 0 1 * * monthly ?fill=1w2d3h4m5s {\"a\": 1, b: [true, null], 'c': 'x'}",
    "0 12 * * 7 sunday_seven",
    "0 12 * * 0,7 sunday_twice",
    "15 10 13 * 5 friday_or_13th",
    "0 0 */2 * 1 odd_dates_or_monday",
    "0 0 1-31 * 1 all_dates_spelt_out",
    "0 9 29 2 * leap_day",
    "0 0 31 2 * never_due",
    "0 0 31 4,6,9,11 * never_due_either",
    "1,2,3-5,*/20 */7 * 1,6-12 * mixed",
    "0 * * * * keyed ?jobKey=hourly%20key",
    "0 * * * * keyed_preserve ?jobKey=k&jobKeyMode=preserve_run_at",
    "0 * * * * empty_key ?jobKey=",
    "0 * * * * plus_space ?queue=a+b",
    "0 * * * * ns:task/with-chars_1",
    "0 * * * * with_id ?id=_Under-score9",
    "  0   *  * * *   padded   ",
    "# a comment",
    "",
    # refused
    "60 * * * * minute_too_large",
    "* 24 * * * hour_too_large",
    "* * 0 * * date_too_small",
    "* * * 13 * month_too_large",
    "* * * * 8 dow_too_large",
    "5-5 * * * * empty_range",
    "9-3 * * * * backwards_range",
    "*/0 * * * * zero_step",
    "1-10/2 * * * * stepped_range",
    "* * * * * 9starts_with_digit",
    "* * * * * task ?unknown=1",
    "* * * * * task ?id=1bad",
    "* * * * * task ?id=a&id=b",
    "* * * * * task ?fill=1y",
    "* * * * * task ?fill=",
    "* * * * * task ?max=-1",
    "* * * * * task ?queue=has.dot",
    "* * * * * task ?priority=1.5",
    "* * * * * task ?jobKeyMode=delete",
    "* * * * * task {not json5",
    "* * * * * task {'a': 1} trailing",
    "* * * * * task [1, 2]",
    "* * * * task_missing_a_field",
    "@daily task",
    "* * * * * task ?",
]


def node_parse(lines: list[str]) -> list[dict]:
    ensure_graphile_worker()
    request = {"lines": lines, "start": START.isoformat(), "due": DUE}
    result = subprocess.run(
        ["node", str(INTEROP_DIR / "parse_crontab.mjs")],
        input=json.dumps(request),
        cwd=INTEROP_DIR,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ours(line: str) -> dict:
    crontab = parse_crontab(line)
    if crontab.problems:
        return {"ok": False, "error": crontab.problems[0].reason}
    if not crontab.items:
        return {"ok": True, "items": 0}
    (item,) = crontab.items
    options = item.options
    due, moment = [], START
    for _ in range(DUE):
        moment = item.next_due(moment)
        if moment is None:
            break
        due.append(moment.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    return {
        "ok": True,
        "items": 1,
        "identifier": item.identifier,
        "task": item.task,
        "options": {
            "backfillPeriod": int(options.fill / timedelta(milliseconds=1)),
            "maxAttempts": options.max_attempts,
            "queueName": options.queue,
            "priority": options.priority,
            "jobKey": options.job_key,
            "jobKeyMode": options.job_key_mode,
        },
        "payload": item.payload,
        "values": [list(values) for values in item.values],
        "due": due,
    }


def test_parser_agrees_with_graphile_worker_on_every_line():
    theirs = node_parse(LINES)
    disagreements = []
    for line, real in zip(LINES, theirs, strict=True):
        mine = ours(line)
        if not real["ok"]:
            if mine["ok"]:
                disagreements.append((line, "accepted, but graphile-worker says", real["error"]))
            continue
        # Node scans at most eight years of minutes: a leap-day item fires only twice in them.
        if "due" in real:
            mine["due"] = mine["due"][: len(real["due"])]
        if mine != real:
            disagreements.append((line, mine, real))
    assert not disagreements, json.dumps(disagreements, indent=1, default=str)
    refused = sum(not real["ok"] for real in theirs)
    assert refused >= 20  # the refused half of LINES is refused by graphile-worker too


def test_duplicate_identifiers_are_refused_by_both():
    crontab = "0 4 * * * digest\n0 5 * * * digest\n"
    (real,) = node_parse([crontab])
    assert not real["ok"] and "duplicate identifiers" in real["error"]
    assert parse_crontab(crontab).problems[0].line_number == 2


# (mostly valid, sometimes not) fragments: a line is refused when any of its parts is.
GOOD_FIELDS = ["*", "*/1", "*/7", "0", "7", "07", "1-5", "0-6", "1,2", "1,*/2", "5,10-12"]
BAD_FIELDS = ["*/0", "60", "5-1", "3-3", ",", "1-", "-1", "32", "**", "*/", "1/2"]
GOOD_TASKS = ["t", "send_digest", "a:b/c-d", "_x"]
BAD_TASKS = ["9t", "t!", "-t", "t.x"]
GOOD_OPTIONS = [
    "",
    "?id=x",
    "?fill=1d",
    "?fill=2w3d4h5m6s",
    "?max=0",
    "?max=10",
    "?queue=q:1-a_b",
    "?queue=q%20q",
    "?priority=-5",
    "?jobKey=a%26b",
    "?jobKey=x&jobKeyMode=replace",
    "?jobKeyMode=preserve_run_at",
    "?id=a&queue=b&max=2&priority=3&fill=1h",
    "?&id=a",
    "?id=a&",
    "?jobKey=a=b",
]
BAD_OPTIONS = [
    "?id=9x",
    "?id=",
    "?fill=1d1",
    "?fill=d",
    "?max=x",
    "?queue=q+q",
    "?priority=+5",
    "?priority=",
    "?jobKey=k&jobKeyMode=bad",
    "?x=1",
    "?id=a&id=a",
    "?=a",
    "?id",
]
GOOD_PAYLOADS = [
    "",
    "{}",
    "{a: 1}",
    '{"a": [1, {"b": null}]}',
    "{a: 1,}",
    "{'s': 'x'}",
    "{a: 0x1F}",
    "{a: .5}",
    '{"a": "\\u0041"}',
]
BAD_PAYLOADS = ["{a}", "{a: 1} {b: 2}", "{a: 'x}"]


def generated_lines(count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)

    def pick(good: list[str], bad: list[str]) -> str:
        return rng.choice(bad if rng.random() < 0.04 else good)

    lines = []
    for _ in range(count):
        fields = " ".join(pick(GOOD_FIELDS, BAD_FIELDS) for _ in range(5))
        spaces = rng.choice([" ", "  ", "\t"])
        parts = [
            fields,
            pick(GOOD_TASKS, BAD_TASKS),
            pick(GOOD_OPTIONS, BAD_OPTIONS),
            pick(GOOD_PAYLOADS, BAD_PAYLOADS),
        ]
        lines.append(spaces.join(part for part in parts if part))
    return lines


def test_parser_agrees_with_graphile_worker_on_generated_lines():
    lines = generated_lines(400, seed=16)
    theirs = node_parse(lines)
    disagreements = []
    for line, real in zip(lines, theirs, strict=True):
        mine = ours(line)
        if mine["ok"] != real["ok"]:
            disagreements.append((line, mine.get("error"), real.get("error")))
        elif real["ok"]:
            mine["due"] = mine["due"][: len(real["due"])]
            if mine != real:
                disagreements.append((line, mine, real))
    assert not disagreements, "\n".join(str(d)[:400] for d in disagreements[:10])
    assert 50 < sum(real["ok"] for real in theirs) < 350  # both outcomes well exercised


def known_rows() -> dict[str, tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT identifier, known_since, last_execution "
            "FROM graphile_worker._private_known_crontabs"
        )
        return {row[0]: row[1:] for row in cursor.fetchall()}


def test_a_real_worker_backfills_and_the_page_reads_its_rows(worker_rows, tmp_path, settings):
    """A Node worker runs our crontab file: it records both items, backfills the minutes the
    every-minute item missed while no worker ran (fill=5m), and the console, given the same
    file, finds both on time with the backfilled jobs queued. Then the workers stop for three
    days (its last execution moved back): the every-minute item is missed."""
    crontab = tmp_path / "crontab"
    # cron_only_task has no task file: the worker queues its jobs but never runs them.
    crontab.write_text(
        "* * * * * cron_only_task ?id=every_minute&fill=5m {source: 'interop'}\n"
        "0 4 * * * cron_only_task ?id=nightly\n"
    )
    settings.GRAPHILE_WORKER_CRONTAB = str(crontab)
    # Generous: the test waits for an execution two minutes back, and the clock moves on.
    settings.CRON_MISSED_TOLERANCE_SECONDS = 180
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO graphile_worker._private_known_crontabs VALUES ('every_minute', "
            "now() - interval '1 hour', date_trunc('minute', now()) - interval '10 minutes')"
        )
        cursor.execute("SELECT date_trunc('minute', now()) - interval '2 minutes'")
        recent = cursor.fetchone()[0]
    output, log = tmp_path / "runs.jsonl", tmp_path / "worker.log"
    args = ["--crontab", str(crontab), "--poll-interval", "60000"]
    with running_node_worker(node_database_url(), output, log, args) as process:
        wait_for(
            lambda: "nightly" in (rows := known_rows()) and rows["every_minute"][1] >= recent,
            timeout=STARTUP_TIMEOUT,
            what="the Node worker to record its crontab and backfill",
            process=process,
            log=log,
        )
    report = crons.cron_report(settings.WORKER_DATABASE)
    rows = {row.identifier: row for row in report.rows}
    assert {identifier: row.status for identifier, row in rows.items()} == {
        "every_minute": crons.OK,
        "nightly": crons.OK,
    }
    # Backfilled minutes are jobs with _cron in their payload, both items' task alike.
    assert rows["every_minute"].queued.count >= 3 and rows["every_minute"].task_shared
    assert report.crontab.source == f"file {crontab}"
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE graphile_worker._private_known_crontabs "
            "SET last_execution = last_execution - interval '3 days' "
            "WHERE identifier = 'every_minute'"
        )
    assert {
        row.identifier for row in crons.cron_report(settings.WORKER_DATABASE).rows if row.missed
    } == {"every_minute"}
