"""The demo seed covers every state the console shows, with a stale worker and an orphan lock."""

from datetime import timedelta

from django.core.management import call_command

from worker_admin.demo.seed import seed_demo
from worker_admin.models import Job, JobQueue, Task, Worker
from worker_admin.stats import queue_stats


def test_seed_demo__every_state_and_a_fleet(utils):
    result = seed_demo(utils, jobs=2000)
    stats = queue_stats(utils.alias)
    assert result.jobs == stats.counts.total == 2000
    assert (
        min(stats.counts.ready, stats.counts.scheduled, stats.counts.locked, stats.counts.failed)
        > 0
    )
    assert stats.counts.retrying > 0
    assert Task.objects.count() >= 6 and JobQueue.objects.count() >= 4
    assert Job.objects.exclude(key=None).count() > 100
    assert Job.objects.exclude(flags=None).count() > 10
    assert Job.objects.retrying().exclude(last_error=None).count() == stats.counts.retrying
    stale = Worker.objects.stale(timedelta(minutes=5))
    assert list(stale.values_list("id", flat=True)) == [result.stale_worker]
    assert Worker.objects.healthy(timedelta(minutes=5)).count() == 3
    orphan = Job.objects.locked_by(result.orphan_lock_holder)
    assert orphan.exists() and not Worker.objects.filter(id=result.orphan_lock_holder).exists()


def test_demo_command__refuses_to_seed_a_queue_that_has_jobs(utils, jobs, capsys):
    jobs.ready()
    call_command("demo", "--no-serve")
    assert "not adding demo data" in capsys.readouterr().out
    assert Job.objects.count() == 1
