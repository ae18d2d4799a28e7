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
from worker_admin.utils import RUN_NOW, WorkerUtils

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


def _refused(action: str, message: str, *args) -> None:
    """Bad input: exit status 2, one sentence, nothing written but a "rejected" audit entry."""
    with pytest.raises(CommandError, match=re.escape(message)) as refused:
        _run(*args)
    assert refused.value.returncode == 2
    assert not AuditEntry.objects.exclude(outcome="rejected").exists()
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.outcome, entry.via) == (action, "rejected", "cli")
    assert entry.actor_name == getpass.getuser()
    assert message in entry.error
    assert entry.changed_ids == []


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
    with pytest.raises(CommandError, match="The --payload is not valid JSON") as refused:
        parsing.parse_payload("{nope")
    assert refused.value.returncode == 2
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
    _refused("add_job", message, "add", "send_email", *args)
    assert not Job.objects.exists()


def test_add__payload_file_and_stdin(db, tmp_path):
    path = tmp_path / "payload.json"
    path.write_text('{"to": "ops@example.com", "n": [1, 2]}', encoding="utf-8")
    first = _json("add", "send_email", "--payload-file", str(path))
    assert Job.objects.get(id=first["id"]).payload == {"to": "ops@example.com", "n": [1, 2]}

    out = StringIO()
    stdin = StringIO('["from", "stdin"]')
    call_command(
        "graphile_worker", "--json", "add", "t", "--payload-file", "-", stdin=stdin, stdout=out
    )
    assert Job.objects.get(id=json.loads(out.getvalue())["id"]).payload == ["from", "stdin"]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("{nope", [], "--payload-file '{path}' is not valid JSON"),
        (None, [], "--payload-file '{path}' does not exist."),
        ("{}", ["--payload", "{}"], "Give either --payload or --payload-file, not both."),
        (b"\xff\xfe{", [], "--payload-file '{path}' is not UTF-8 text."),
    ],
)
def test_add__bad_payload_file_writes_nothing(db, tmp_path, content, extra, message):
    path = tmp_path / "payload.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    message = message.replace("{path}", str(path))
    _refused("add_job", message, "add", "t", "--payload-file", str(path), *extra)
    assert not Job.objects.exists()


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


def test_show__redacts_configured_paths_and_reveal_is_audited(jobs, settings):
    settings.REDACT_PAYLOAD_PATHS = ["card.number", "*.token"]
    job = jobs.ready("charge", payload={"card": {"number": "4111"}, "auth": {"token": "s3cret"}})
    shown = _json("show", str(job.id))["job"]
    assert shown["payload"] == {"card": {"number": "[redacted]"}, "auth": {"token": "[redacted]"}}
    assert shown["redacted_paths"] == ["card.number", "auth.token"]
    assert "s3cret" not in _run("show", str(job.id))
    assert not AuditEntry.objects.exists()  # reading is not audited

    revealed = _json("show", str(job.id), "--reveal")["job"]
    assert revealed["payload"]["auth"]["token"] == "s3cret"
    entry = _audit("reveal_payload")
    assert entry.requested_ids == [job.id]
    assert entry.parameters == {"paths": ["card.number", "auth.token"]}
    assert "s3cret" not in json.dumps(entry.parameters) + entry.summary


def test_read_commands_refuse_another_schema(db):
    WorkerUtils(schema="gw_other").migrate()  # rolled back with the test's transaction
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
    assert out.strip() == "Complete: changed 0 of 1; 1 skipped: a worker holds them."
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
    args = [arg.replace("{id}", str(job.id)) for arg in args]
    _refused(args[0], message, *args)
    job = Job.objects.get(id=job.id)
    assert (job.run_at, job.priority, job.attempts, job.max_attempts, job.last_error) == before


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
        "estimates",
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


# -- cleanup / force-unlock / sweep-stale-workers -----------------------------------------


def _register(jobs, worker_id: str, heartbeat_age: str) -> None:
    jobs.sql(
        f"INSERT INTO {jobs.q}._private_workers (id, last_heartbeat_at) "
        "VALUES (%s, now() - %s::interval)",
        [worker_id, heartbeat_age],
    )


def _registered(jobs) -> list[str]:
    return [row[0] for row in jobs.sql(f"SELECT id FROM {jobs.q}._private_workers ORDER BY id")]


def test_cleanup__all_tasks_json_and_audit(jobs):
    failed = jobs.failed("resize", queue_name="thumbs")
    kept = jobs.ready("send_email")
    result = _json("cleanup", "--reason", "old failures")
    assert set(result) == {
        "tasks",
        "deleted_job_ids",
        "changed_since_preview",
        "audit_entry_id",
        "deleted_task_identifiers",
        "deleted_queue_names",
        "warnings",
        "summary",
        "message",
    }
    assert result["tasks"] == [
        "delete-permanently-failed-jobs",
        "gc-task-identifiers",
        "gc-job-queues",
    ]
    assert result["deleted_job_ids"] == [failed.id]
    assert "thumbs" in result["deleted_queue_names"]
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]
    entry = _audit("cleanup")
    assert entry.changed_ids == [failed.id]
    assert [row["id"] for row in entry.before_image] == [failed.id]
    assert entry.before_image[0]["payload"] == {"n": 1}
    assert entry.parameters["tasks"] == result["tasks"]
    assert entry.reason == "old failures"


def test_cleanup__one_task_human(jobs):
    failed = jobs.failed("resize")
    out = _run("cleanup", "delete-permanently-failed-jobs", "--reason", "old")
    assert out.strip() == "Cleanup: deleted 1 of 1 permanently failed job."
    assert not Job.objects.filter(id=failed.id).exists()
    assert _audit("cleanup").parameters["tasks"] == ["delete-permanently-failed-jobs"]


def test_cleanup__unknown_task_writes_nothing(jobs):
    failed = jobs.failed("resize")
    message = "Unknown cleanup task 'gc-everything'"
    _refused("cleanup", message, "cleanup", "gc-job-queues", "gc-everything")
    assert Job.objects.filter(id=failed.id).exists()


def test_force_unlock(jobs):
    held = jobs.locked(by="graphile_worker_dead", queue_name="q")
    jobs.sql(f"UPDATE {jobs.q}._private_job_queues SET locked_by = 'graphile_worker_dead'")
    other = jobs.locked(by="graphile_worker_alive")
    result = _json("force-unlock", "graphile_worker_dead", "--reason", "host gone")
    assert {key: result[key] for key in ("worker_ids", "jobs_unlocked", "queues_unlocked")} == {
        "worker_ids": ["graphile_worker_dead"],
        "jobs_unlocked": [held.id],
        "queues_unlocked": ["q"],
    }
    assert result["summary"] == "changed 1 of 1 job, unlocked 1 queue"
    assert result["message"] == "Force-unlock: changed 1 of 1 job, unlocked 1 queue."
    assert Job.objects.get(id=held.id).locked_by is None
    assert Job.objects.get(id=other.id).locked_by == "graphile_worker_alive"
    entry = _audit("force_unlock")
    assert entry.changed_ids == [held.id]
    assert entry.parameters["worker_ids"] == ["graphile_worker_dead"]
    assert entry.parameters["queues_unlocked"] == ["q"] and entry.reason == "host gone"
    out = _run("force-unlock", "graphile_worker_nobody")
    assert out.strip().startswith(
        "Force-unlock: nothing to unlock: those workers held no locks at the preview."
    )


def test_force_unlock__no_ids_writes_nothing(jobs):
    held = jobs.locked(by="graphile_worker_dead")
    _refused("force_unlock", "Give at least one worker id.", "force-unlock")
    message = "A worker id must not be empty."
    _refused("force_unlock", message, "force-unlock", "graphile_worker_dead", " ")
    assert Job.objects.get(id=held.id).locked_by == "graphile_worker_dead"


SWEEP_KEYS = {
    "dry_run",
    "lock_busy",
    "worker_ids",
    "reasons",
    "excluded",
    "job_count",
    "superseded_count",
    "jobs",
    "counts_by_task",
    "summary",
    "message",
}


def test_sweep_stale_workers__dry_run_then_real(jobs):
    _register(jobs, "graphile_worker_healthy", "30 seconds")
    _register(jobs, "graphile_worker_stale", "20 minutes")
    lost = jobs.locked(by="graphile_worker_stale", age="21 minutes")

    dry = _json("sweep-stale-workers", "--sweep-threshold", "10m", "--dry-run")
    assert set(dry) == SWEEP_KEYS
    assert dry["dry_run"] is True and dry["worker_ids"] == ["graphile_worker_stale"]
    assert [job["id"] for job in dry["jobs"]] == [lost.id]
    assert dry["summary"] == "dry run: would release 1 job of 1 dead worker"
    assert "locked_by: graphile_worker_stale -> (none)" in dry["jobs"][0]["changes"]
    assert Job.objects.get(id=lost.id).locked_by == "graphile_worker_stale"
    assert not AuditEntry.objects.exists()

    out = _run(
        "sweep-stale-workers",
        "--sweep-threshold",
        "10m",
        "--recovery-delay",
        "0",
        "--reason",
        "host gone",
    )
    assert out.startswith("Sweep: changed 1 of 1 job of 1 dead worker (1 recovered).")
    assert "graphile_worker_stale" in out
    assert Job.objects.get(id=lost.id).locked_by is None
    assert _registered(jobs) == ["graphile_worker_healthy"]
    entry = _audit("sweep")
    assert entry.changed_ids == [lost.id]
    assert entry.parameters["worker_ids"] == ["graphile_worker_stale"]
    assert entry.parameters["threshold_seconds"] == 600 and entry.reason == "host gone"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep-threshold", "soon"], "Invalid duration 'soon'"),
        (["--recovery-delay", "1.5s"], "Invalid duration '1.5s'"),
        (["--sweep-threshold", "0"], "--sweep-threshold must be longer than zero."),
    ],
)
def test_sweep_stale_workers__bad_input_writes_nothing(jobs, args, message):
    _register(jobs, "graphile_worker_stale", "1 hour")
    _refused("sweep", message, "sweep-stale-workers", *args)
    assert _registered(jobs) == ["graphile_worker_stale"]


# -- queues / workers ---------------------------------------------------------------------


def test_queues(jobs):
    jobs.ready(queue_name="mail")
    jobs.locked(by="graphile_worker_abc", queue_name="thumbs")
    jobs.sql(f"UPDATE {jobs.q}._private_job_queues SET locked_by = 'graphile_worker_abc', "
             "locked_at = now() WHERE queue_name = 'thumbs'")  # fmt: skip
    result = _json("queues")
    assert set(result) == {"now", "queues", "count", "truncated"}
    assert result["count"] == 2 and result["truncated"] is False
    rows = {row["queue_name"]: row for row in result["queues"]}
    assert set(rows["mail"]) == {
        "queue_name",
        "ready",
        "scheduled",
        "locked",
        "failed",
        "retrying",
        "total",
        "oldest_ready_age_seconds",
        "locked_by",
        "locked_at",
        "lock_age_seconds",
        "lock_is_suspect",
    }
    assert (rows["mail"]["ready"], rows["mail"]["locked_by"]) == (1, None)
    assert rows["thumbs"]["locked_by"] == "graphile_worker_abc"
    out = _run("queues")
    assert out.splitlines()[0].split()[:2] == ["queue_name", "ready"]
    assert "mail" in out and "thumbs" in out
    assert AuditEntry.objects.count() == 0


def test_queues__empty_and_other_schema(db):
    assert _run("queues").strip() == "No queues."
    WorkerUtils(schema="gw_other").migrate()  # rolled back with the test's transaction
    with pytest.raises(CommandError, match="reads only the configured schema"):
        _run("--schema", "gw_other", "queues")


def test_workers(jobs):
    _register(jobs, "graphile_worker_stale", "20 minutes")
    jobs.locked(by="graphile_worker_stale", age="21 minutes")
    jobs.locked(by="worker-orphan", age="2 minutes")
    result = _json("workers", "--threshold", "10m")
    assert set(result) == {"now", "threshold_seconds", "holders", "registered_workers"}
    assert result["threshold_seconds"] == 600
    holders = {h["id"]: h for h in result["holders"]}
    assert set(holders) == {"graphile_worker_stale", "worker-orphan"}
    assert set(holders["worker-orphan"]) == {
        "id",
        "kind",
        "registered",
        "stale",
        "jobs_held",
        "queues_held",
        "oldest_lock_at",
        "oldest_lock_age_seconds",
    }
    assert holders["graphile_worker_stale"]["registered"] is True
    assert holders["graphile_worker_stale"]["stale"] is True
    assert holders["worker-orphan"]["registered"] is False
    assert [w["id"] for w in result["registered_workers"]] == ["graphile_worker_stale"]
    out = _run("workers")
    assert "Lock holders" in out and "Registered workers" in out and "worker-orphan" in out
    assert AuditEntry.objects.count() == 0


def test_workers__bad_threshold(db):
    with pytest.raises(CommandError, match=re.escape("Invalid duration 'long'")):
        _run("workers", "--threshold", "long")
    with pytest.raises(CommandError, match=re.escape("--threshold must be longer than zero.")):
        _run("workers", "--threshold", "0")


def test_sweep_stale_workers__superseded_jobs_listed_and_left_failed(utils, jobs):
    from tests.test_recovery import build_superseded

    made = build_superseded(utils, jobs)
    replaced, removed, replacement = made["replaced"], made["removed"], made["replacement"]

    dry = _json("sweep-stale-workers", "--dry-run")
    plans = {job["id"]: (job["plan"], job["superseded"], job["replaced_by"]) for job in dry["jobs"]}
    superseded_by = f"stays failed: superseded by job {replacement.id}"
    assert plans[replaced.id] == (superseded_by, True, replacement.id)
    assert plans[removed.id] == ("stays failed: superseded", True, None)
    assert plans[made["plain"].id] == ("recover: runnable again", False, None)
    assert dry["superseded_count"] == 2
    human = _run("sweep-stale-workers", "--dry-run")
    assert f"superseded by job {replacement.id}" in human

    out = _run("sweep-stale-workers")

    assert out.startswith(
        "Sweep: changed 4 of 4 jobs of 1 dead worker "
        "(2 recovered, 2 superseded unlocked and left failed)."
    )
    for job in (replaced, removed):
        after = Job.objects.with_state().get(id=job.id)
        assert (after.state, after.attempts, after.locked_by) == ("failed", 25, None)
    assert sorted(_audit("sweep").changed_ids) == sorted(job["id"] for job in dry["jobs"])


def test_cleanup__deleting_jobs_needs_a_reason(jobs):
    failed = jobs.failed("resize")
    message = "Give --reason to delete permanently failed jobs; it goes in the audit log."
    _refused("cleanup", message, "cleanup")
    _refused("cleanup", message, "cleanup", "delete-permanently-failed-jobs", "--reason", " ")
    assert Job.objects.filter(id=failed.id).exists()
    assert _run("cleanup", "gc-job-queues").startswith("Cleanup: deleted ")  # no reason needed
