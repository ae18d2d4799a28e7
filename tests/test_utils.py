"""WorkerUtils: adding jobs and listing workers, on the real schema functions."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from worker_admin.models import Job
from worker_admin.utils import InvalidJobSpec, JobKeyMode, JobSpec, RawJobSpec


@dataclass
class SendEmail:
    IDENTIFIER = "send_email"
    to: str


def test_add_raw_job__defaults(utils):
    job = utils.add_raw_job("send_email", {"to": "a@example.org"})
    assert (job.payload, job.priority, job.max_attempts, job.attempts) == (
        {"to": "a@example.org"},
        0,
        25,
        0,
    )
    assert job.job_queue_id is None and job.key is None and job.flags is None
    assert Job.objects.get(id=job.id).task.identifier == "send_email"


def test_add_raw_job__no_payload_is_empty_object(utils):
    assert utils.add_raw_job("noop").payload == {}


def test_add_job__typed_payload(utils):
    job = utils.add_job(SendEmail(to="b@example.org"), JobSpec(queue_name="emails", priority=2))
    assert (job.payload, job.priority) == ({"to": "b@example.org"}, 2)
    assert Job.objects.get(id=job.id).job_queue.queue_name == "emails"


def test_add_raw_job__key_replace_updates_in_place(utils):
    first = utils.add_raw_job("t", {"v": 1}, JobSpec(job_key="k"))
    second = utils.add_raw_job("t", {"v": 2}, JobSpec(job_key="k", job_key_mode=JobKeyMode.REPLACE))
    assert second.id == first.id
    assert (second.payload, second.revision) == ({"v": 2}, 1)
    assert Job.objects.filter(key="k").count() == 1


def test_add_raw_job__preserve_run_at_keeps_schedule(utils):
    at = datetime(2031, 1, 1, tzinfo=UTC)
    first = utils.add_raw_job("t", {}, JobSpec(job_key="p", run_at=at))
    second = utils.add_raw_job(
        "t", {}, JobSpec(job_key="p", run_at=at + timedelta(days=1), job_key_mode="preserve_run_at")
    )
    assert second.id == first.id and second.run_at == at


def test_add_raw_job__unsafe_dedupe_keeps_payload(utils):
    first = utils.add_raw_job("t", {"v": 1}, JobSpec(job_key="u"))
    second = utils.add_raw_job("t", {"v": 2}, JobSpec(job_key="u", job_key_mode="unsafe_dedupe"))
    assert second.id == first.id and second.payload == {"v": 1}


@pytest.mark.parametrize(
    ("identifier", "spec", "message"),
    [
        ("", JobSpec(), "identifier"),
        ("x" * 129, JobSpec(), "identifier"),
        ("t", JobSpec(max_attempts=0), "max_attempts"),
        ("t", JobSpec(priority=40_000), "priority"),
        ("t", JobSpec(priority=True), "priority"),
        ("t", JobSpec(job_key=""), "job_key"),
        ("t", JobSpec(job_key="k" * 513), "job_key"),
        ("t", JobSpec(queue_name="q" * 129), "queue_name"),
        ("t", JobSpec(run_at=datetime(2030, 1, 1)), "timezone"),
        ("t", JobSpec(job_key_mode="sometimes"), "job_key_mode"),
        ("t", JobSpec(flags=[""]), "flag"),
    ],
)
def test_add_raw_job__bad_spec_is_refused_before_writing(utils, identifier, spec, message):
    before = Job.objects.count()
    with pytest.raises(InvalidJobSpec, match=message):
        utils.add_raw_job(identifier, {}, spec)
    assert Job.objects.count() == before


def test_add_raw_job__payload_must_be_json(utils):
    with pytest.raises(InvalidJobSpec, match="JSON"):
        utils.add_raw_job("t", {"when": datetime.now()})
    with pytest.raises(InvalidJobSpec, match="JSON"):
        utils.add_raw_job("t", {"x": float("nan")})


def test_add_raw_jobs__batch_with_mixed_specs(utils):
    added = utils.add_raw_jobs(
        [
            RawJobSpec("send_email", {"to": "a"}, JobSpec(queue_name="emails", flags=["x"])),
            RawJobSpec("report", {"id": 42}, JobSpec(priority=-1, max_attempts=3)),
            RawJobSpec("report", None, JobSpec(job_key="batch-key")),
        ]
    )
    assert len(added) == 3
    rows = {
        job.task.identifier + ":" + str(job.payload): job
        for job in Job.objects.filter(id__in=[j.id for j in added]).select_related("task")
    }
    assert set(rows) == {"send_email:{'to': 'a'}", "report:{'id': 42}", "report:{}"}
    assert rows["send_email:{'to': 'a'}"].flags == {"x": True}
    assert (rows["report:{'id': 42}"].priority, rows["report:{'id': 42}"].max_attempts) == (-1, 3)
    assert rows["report:{}"].key == "batch-key"


def test_add_raw_jobs__empty_batch_writes_nothing(utils, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert utils.add_raw_jobs([]) == []


def test_add_raw_jobs__unsafe_dedupe_rejected(utils):
    with pytest.raises(InvalidJobSpec, match="UnsafeDedupe"):
        utils.add_raw_jobs(
            [
                RawJobSpec("t", {}),
                RawJobSpec("t", {}, JobSpec(job_key="k", job_key_mode=JobKeyMode.UNSAFE_DEDUPE)),
            ]
        )
    assert not Job.objects.exists()


def test_add_jobs__typed(utils):
    added = utils.add_jobs([(SendEmail("a"), None), (SendEmail("b"), JobSpec(priority=1))])
    assert sorted(job.payload["to"] for job in added) == ["a", "b"]


def test_add_batch_job__array_payload_and_empty_refused(utils):
    job = utils.add_batch_job("digest", [{"id": 1}, {"id": 2}], JobSpec(job_key="digest"))
    assert job.payload == [{"id": 1}, {"id": 2}]
    again = utils.add_batch_job("digest", [{"id": 3}], JobSpec(job_key="digest"))
    assert again.id == job.id and again.payload == [{"id": 1}, {"id": 2}, {"id": 3}]
    with pytest.raises(InvalidJobSpec, match="at least one"):
        utils.add_batch_job("digest", [])


def test_list_active_workers__ages_and_staleness(utils, jobs, worker_schema):
    jobs.sql(f"SELECT {worker_schema}.worker_heartbeat('w1', '{{\"pid\": 7}}'::json)")
    jobs.sql(f"SELECT {worker_schema}.worker_heartbeat('w2')")
    jobs.sql(
        f"UPDATE {worker_schema}._private_workers SET last_heartbeat_at = now() - "
        "interval '6 minutes' WHERE id = 'w2'"
    )
    workers = {w.id: w for w in utils.list_active_workers(timedelta(minutes=5))}
    assert set(workers) == {"w1", "w2"}
    assert workers["w1"].metadata == {"pid": 7} and not workers["w1"].is_stale
    assert workers["w2"].is_stale
    assert timedelta(minutes=6) <= workers["w2"].heartbeat_age < timedelta(minutes=7)
    assert not utils.list_active_workers(timedelta(minutes=10))[1].is_stale


def test_add_raw_job__unsafe_dedupe_returns_a_running_job_unchanged(utils, jobs):
    running = jobs.locked(by="graphile_worker_busy", job_key="dedupe-me")
    again = utils.add_raw_job(
        "send_email", {"v": 2}, JobSpec(job_key="dedupe-me", job_key_mode=JobKeyMode.UNSAFE_DEDUPE)
    )
    assert again.id == running.id
    assert (again.locked_by, again.payload) == ("graphile_worker_busy", running.payload)
    assert again.revision == running.revision + 1  # only the revision moves
    assert Job.objects.filter(key="dedupe-me").count() == 1


def test_add_raw_job__replace_on_a_running_job_makes_a_new_one(utils, jobs):
    running = jobs.locked(by="graphile_worker_busy", job_key="replace-me")
    new = utils.add_raw_job("send_email", {"v": 2}, JobSpec(job_key="replace-me"))
    assert new.id != running.id and new.payload == {"v": 2}
    old = Job.objects.get(id=running.id)
    assert old.key is None and old.locked_by == "graphile_worker_busy"


def test_list_active_workers__newest_heartbeat_first_stale_at_exactly_the_threshold(utils, jobs):
    """Rust's order (last_heartbeat_at desc; ties here by id) and its inclusive cut-off: a
    heartbeat exactly `threshold` old is stale. The test's transaction fixes now()."""
    for worker_id, age in [
        ("w_a", "1 minute"),
        ("w_exact", "5 minutes"),
        ("w_c", "1 minute"),
        ("w_under", "4 minutes 59.999999 seconds"),
        ("w_fresh", "10 seconds"),
    ]:
        jobs.sql(
            f"INSERT INTO {jobs.q}._private_workers (id, last_heartbeat_at) "
            "VALUES (%s, now() - %s::interval)",
            [worker_id, age],
        )

    workers = utils.list_active_workers(timedelta(minutes=5))

    assert [(w.id, w.is_stale) for w in workers] == [
        ("w_fresh", False),
        ("w_a", False),
        ("w_c", False),
        ("w_under", False),
        ("w_exact", True),
    ]
    assert workers[-1].heartbeat_age == timedelta(minutes=5)
