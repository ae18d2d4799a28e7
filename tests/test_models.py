"""The worker tables are read-only through the models: every write must go through utils."""

import pytest

from worker_admin.models import Job, ReadOnlyWorkerTableError, Task, Worker


def test_models__save_and_delete_raise(jobs):
    job = jobs.ready()
    with pytest.raises(ReadOnlyWorkerTableError, match="WorkerUtils"):
        job.save()
    with pytest.raises(ReadOnlyWorkerTableError):
        job.delete()
    assert Job.objects.filter(id=job.id).exists()


@pytest.mark.parametrize(
    "write",
    [
        lambda qs: qs.update(priority=5),
        lambda qs: qs.delete(),
        lambda qs: qs.create(priority=1),
        lambda qs: qs.bulk_create([]),
    ],
)
def test_models__queryset_writes_raise(jobs, write):
    job = jobs.ready()
    with pytest.raises(ReadOnlyWorkerTableError):
        write(Job.objects.filter(id=job.id))
    assert Job.objects.get(id=job.id).priority == 0


def test_models__job_reads_every_column(jobs):
    job = jobs.add(
        "send_email",
        {"to": "a@example.org", "n": [1, 2]},
        queue_name="emails",
        job_key="k-1",
        priority=3,
        max_attempts=7,
        flags=["b", "a"],
    )
    job = Job.objects.select_related("task", "job_queue").get(id=job.id)
    assert (job.task.identifier, job.job_queue.queue_name) == ("send_email", "emails")
    assert job.payload == {"to": "a@example.org", "n": [1, 2]}
    assert (job.key, job.priority, job.max_attempts, job.attempts, job.revision) == (
        "k-1",
        3,
        7,
        0,
        0,
    )
    assert job.flags == {"a": True, "b": True}
    assert job.flag_names == ["a", "b"]
    assert job.is_available is True
    assert Task.objects.filter(identifier="send_email").exists()


def test_models__workers_stale_and_healthy(jobs, worker_schema):
    jobs.sql(f"SELECT {worker_schema}.worker_heartbeat('w-fresh')")
    jobs.sql(f"SELECT {worker_schema}.worker_heartbeat('w-old')")
    jobs.sql(
        f"UPDATE {worker_schema}._private_workers SET last_heartbeat_at = now() - "
        "interval '10 minutes' WHERE id = 'w-old'"
    )
    from datetime import timedelta

    five = timedelta(minutes=5)
    assert list(Worker.objects.stale(five).values_list("id", flat=True)) == ["w-old"]
    assert list(Worker.objects.healthy(five).values_list("id", flat=True)) == ["w-fresh"]
