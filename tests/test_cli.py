"""`manage.py graphile_worker` job commands (add, list, show, complete, fail, reschedule, remove,
stats) through call_command, and the CLI's parsing helpers."""

from __future__ import annotations

import getpass
import json
import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from worker_admin.audit import AuditEntry
from worker_admin.cli import parsing
from worker_admin.models import Job
from worker_admin.utils import RUN_NOW

JOB_ROW_KEYS = {
    "id",
    "task_identifier",
    "queue_name",
    "state",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "key",
    "locked_by",
}
ACTION_KEYS = {"requested", "changed", "skipped_locked", "missing", "summary", "message"}


def _run(*args) -> str:
    out = StringIO()
    call_command("graphile_worker", *args, stdout=out)
    return out.getvalue()


def _json(*args):
    return json.loads(_run("--json", *args))


def _audit(action: str) -> AuditEntry:
    entry = AuditEntry.objects.get(action=action)
    assert entry.actor_name == getpass.getuser()
    assert entry.via == "cli"
    assert entry.outcome == "done"
    return entry


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30),
        ("30s", 30),
        ("30sec", 30),
        ("2seconds", 2),
        ("5m", 300),
        ("5min", 300),
        ("1minute", 60),
        ("2h", 7200),
        ("1hr", 3600),
        ("3hours", 10800),
        ("0", 0),
    ],
)
def test_parse_duration(text, seconds):
    assert parsing.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5x", "-5", "1.5m", "m", "5 m s", "5d"])
def test_parse_duration__bad(text):
    with pytest.raises(CommandError, match="Invalid duration"):
        parsing.parse_duration(text)


def test_parse_run_at():
    assert parsing.parse_run_at("now") is RUN_NOW
    assert parsing.parse_run_at("NOW") is RUN_NOW
    assert parsing.parse_run_at("2030-01-31T09:00:00Z") == datetime(2030, 1, 31, 9, tzinfo=UTC)
    assert parsing.parse_run_at("2030-01-31T10:00:00+01:00") == datetime(2030, 1, 31, 9, tzinfo=UTC)


@pytest.mark.parametrize("text", ["tomorrow", "2030-01-31T09:00:00", "2030-13-01T00:00:00Z"])
def test_parse_run_at__bad(text):
    with pytest.raises(CommandError, match="Invalid --run-at"):
        parsing.parse_run_at(text)


def test_parse_ids():
    assert parsing.parse_ids(["3", "1", "3"]) == [3, 1]
    with pytest.raises(CommandError, match=re.escape("Give at least one job id.")):
        parsing.parse_ids([])
    for bad in ["x", "0", "-1", "1.5", str(2**63)]:
        with pytest.raises(CommandError, match="Invalid job id"):
            parsing.parse_ids(["1", bad])


def test_parse_payload_and_state():
    assert parsing.parse_payload('{"a": [1]}') == {"a": [1]}
    assert parsing.parse_payload(None) is None
    with pytest.raises(CommandError, match="The --payload is not valid JSON"):
        parsing.parse_payload("{nope")
    assert parsing.parse_state("all") is None
    assert parsing.parse_state("Failed") == "failed"
    with pytest.raises(CommandError, match="Unknown state 'done'"):
        parsing.parse_state("done")


# -- add ----------------------------------------------------------------------------------


def test_add__human_and_audit(db):
    out = _run("add", "send_email", "--payload", '{"to": "a@b"}', "--queue", "mail")
    job = Job.objects.get()
    assert out.strip() == f"Added job {job.id} (send_email)."
    assert job.payload == {"to": "a@b"}
    assert job.job_queue.queue_name == "mail"
    entry = _audit("add_job")
    assert entry.changed_ids == [job.id]
    assert entry.parameters["identifier"] == "send_email"


def test_add__json_all_options(db):
    result = _json(
        "add",
        "send_email",
        "--run-at",
        "2030-01-31T09:00:00Z",
        "--max-attempts",
        "3",
        "--key",
        "k1",
        "--job-key-mode",
        "preserve-run-at",
        "--priority",
        "5",
        "--flag",
        "a",
        "--flag",
        "b",
    )
    assert set(result) == {
        "id",
        "identifier",
        "queue_name",
        "run_at",
        "priority",
        "max_attempts",
        "key",
        "message",
    }
    job = Job.objects.get(id=result["id"])
    assert (job.max_attempts, job.priority, job.key) == (3, 5, "k1")
    assert job.run_at == datetime(2030, 1, 31, 9, tzinfo=UTC)
    assert job.flag_names == ["a", "b"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload", "{bad"], "The --payload is not valid JSON"),
        (["--run-at", "soon"], "Invalid --run-at 'soon'"),
        (["--key", "k", "--job-key-mode", "nope"], "Unknown --job-key-mode 'nope'"),
        (["--job-key-mode", "replace"], "--job-key-mode needs --key."),
        (["--max-attempts", "0"], "max_attempts must be between 1"),
    ],
)
def test_add__bad_input_writes_nothing(db, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        _run("add", "send_email", *args)
    assert not Job.objects.exists()
    assert not AuditEntry.objects.exists()


# -- list / show --------------------------------------------------------------------------


def test_list__human_json_and_filters(jobs):
    ready = jobs.ready("send_email", queue_name="mail")
    failed = jobs.failed("resize")
    jobs.scheduled("send_email")
    out = _run("list")
    header, *lines = out.strip().splitlines()
    assert header.split() == [
        "id",
        "task_identifier",
        "queue_name",
        "state",
        "priority",
        "run_at",
        "attempts",
        "max_attempts",
        "key",
        "locked_by",
    ]
    assert len(lines) == 3
    assert header.index("state") == lines[0].index("ready")  # aligned columns

    result = _json("list", "--state", "failed")
    assert set(result) == {"jobs", "count", "limit", "offset"}
    assert [job["id"] for job in result["jobs"]] == [failed.id]
    assert set(result["jobs"][0]) == JOB_ROW_KEYS
    assert result["jobs"][0]["state"] == "failed"

    assert [j["id"] for j in _json("list", "--queue", "mail")["jobs"]] == [ready.id]
    assert len(_json("list", "--identifier", "send_email")["jobs"]) == 2
    paged = _json("list", "--limit", "1", "--offset", "1")
    assert (paged["count"], paged["limit"], paged["offset"]) == (1, 1, 1)
    assert "No jobs match." in _run("list", "--identifier", "nothing")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state", "done"], "Unknown state 'done'"),
        (["--limit", "0"], "--limit must be between 1 and 10000."),
        (["--offset", "-1"], "--offset must not be negative."),
    ],
)
def test_list__bad_input(db, args, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        _run("list", *args)


def test_show(jobs):
    job = jobs.failed("resize", error="disk full")
    out = _run("show", str(job.id))
    assert "disk full" in out and "resize" in out and "failed" in out
    result = _json("show", str(job.id))
    assert set(result) == {"job"}
    assert result["job"]["id"] == job.id
    assert result["job"]["state"] == "failed"
    assert result["job"]["payload"] == {"n": 1}
    with pytest.raises(CommandError, match=re.escape("No job has the id 999999.")):
        _run("show", "999999")
    with pytest.raises(CommandError, match="Invalid job id 'abc'"):
        _run("show", "abc")


def test_read_commands_refuse_another_schema(db):
    with pytest.raises(CommandError, match="reads only the configured schema"):
        _run("--schema", "gw_other", "list")


# -- complete / fail / reschedule / remove ------------------------------------------------


def test_complete(jobs):
    a, b = jobs.ready(), jobs.ready()
    result = _json("complete", str(a.id), str(b.id), "999999")
    assert set(result) == ACTION_KEYS
    assert sorted(result["changed"]) == sorted([a.id, b.id])
    assert result["missing"] == [999999]
    assert not Job.objects.exists()
    entry = _audit("complete")
    assert sorted(entry.changed_ids) == sorted([a.id, b.id])
    assert entry.missing_ids == [999999]


def test_complete__human_and_locked_skipped(jobs):
    held = jobs.locked()
    out = _run("complete", str(held.id))
    assert out.strip() == "Complete: changed 0 of 1; 1 skipped because a worker holds it."
    assert Job.objects.filter(id=held.id).exists()


def test_fail(jobs):
    job = jobs.ready()
    out = _run("fail", str(job.id), "--reason", "bad data")
    assert out.strip() == "Fail: changed 1 of 1."
    job = Job.objects.get(id=job.id)
    assert job.last_error == "bad data" and job.is_permanently_failed
    entry = _audit("fail")
    assert entry.reason == "bad data" and entry.changed_ids == [job.id]


def test_reschedule(jobs):
    job = jobs.scheduled()
    result = _json(
        "reschedule", str(job.id), "--now", "--priority", "7", "--attempts", "0",
        "--max-attempts", "9",
    )  # fmt: skip
    assert set(result) == ACTION_KEYS and result["changed"] == [job.id]
    job = Job.objects.with_state().get(id=job.id)
    assert (job.state, job.priority, job.attempts, job.max_attempts) == ("ready", 7, 0, 9)
    entry = _audit("reschedule")
    assert entry.parameters["run_at"] == "now"

    _run("reschedule", str(job.id), "--run-at", "2030-01-31T09:00:00Z")
    assert Job.objects.get(id=job.id).run_at == datetime(2030, 1, 31, 9, tzinfo=UTC)


def test_remove(jobs):
    job = jobs.ready(job_key="nightly")
    result = _json("remove", "nightly")
    assert result == {
        "key": "nightly",
        "outcome": "removed",
        "job_id": job.id,
        "summary": f"removed job {job.id} (key 'nightly')",
        "message": f"Removed job {job.id} (key 'nightly').",
    }
    assert not Job.objects.exists()
    assert _audit("remove").changed_ids == [job.id]
    assert _run("remove", "nightly").strip() == "No job has the key 'nightly'."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["complete"], "Give at least one job id."),
        (["complete", "1", "x"], "Invalid job id 'x'"),
        (["fail", "{id}"], "Give a --reason for failing the jobs."),
        (["fail", "--reason", "r"], "Give at least one job id."),
        (["fail", "{id}", "--reason", " "], "Give a --reason"),
        (["reschedule", "{id}"], "Nothing to change"),
        (["reschedule", "{id}", "--now", "--run-at", "now"], "either --now or --run-at"),
        (["reschedule", "{id}", "--run-at", "later"], "Invalid --run-at 'later'"),
        (["reschedule", "{id}", "--max-attempts", "0"], "max_attempts must be between 1"),
        (["reschedule", "--now"], "Give at least one job id."),
    ],
)
def test_writes__bad_input_writes_nothing(jobs, args, message):
    job = jobs.ready()
    before = (job.run_at, job.priority, job.attempts, job.max_attempts, job.last_error)
    with pytest.raises(CommandError, match=re.escape(message)):
        _run(*[arg.replace("{id}", str(job.id)) for arg in args])
    job = Job.objects.get(id=job.id)
    assert (job.run_at, job.priority, job.attempts, job.max_attempts, job.last_error) == before
    assert not AuditEntry.objects.exists()


# -- stats --------------------------------------------------------------------------------


def test_stats(jobs):
    jobs.ready("send_email", queue_name="mail")
    jobs.failed("resize")
    result = _json("stats")
    assert set(result) == {
        "now",
        "exact",
        "sampled_fraction",
        "counts",
        "oldest_ready_at",
        "oldest_lock_at",
        "by_task",
        "by_queue",
    }
    assert result["counts"] == {
        "ready": 1,
        "scheduled": 0,
        "locked": 0,
        "failed": 1,
        "retrying": 0,
        "total": 2,
    }
    assert [t["task_identifier"] for t in result["by_task"]] == ["resize", "send_email"]
    assert result["by_queue"][0]["queue_name"] == "mail"
    out = _run("stats")
    assert "By task" in out and "resize" in out and "mail" in out
