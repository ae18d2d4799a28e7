"""Sweep, force-unlock and cleanup from the console: admins only, dry run / preview first,
one-time confirmation, audited."""

import html
import re

import pytest

from worker_admin.audit import AuditEntry
from worker_admin.models import Job, JobQueue, Worker


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def _token(response) -> str:
    return re.search(r'name="token" value="([^"]+)"', response.content.decode()).group(1)


@pytest.fixture
def admin_client(login_as):
    return login_as("admin", "ada")


@pytest.fixture
def operator_client(login_as):
    return login_as("operator", "opal")


def _register(jobs, worker_id: str, age: str) -> None:
    jobs.sql("SELECT graphile_worker.worker_heartbeat(%s)", [worker_id])
    jobs.sql(
        "UPDATE graphile_worker._private_workers SET last_heartbeat_at = now() - %s::interval "
        "WHERE id = %s",
        [age, worker_id],
    )


def test_sweep__dry_run_page_lists_the_first_jobs_and_the_sweep_takes_all(
    admin_client, jobs, monkeypatch
):
    from worker_admin.operations import releasing

    monkeypatch.setattr(releasing, "PREVIEW_ROWS", 2)
    _register(jobs, "graphile_worker_dead", "20 minutes")
    held = [jobs.locked(by="graphile_worker_dead", age="19 minutes").id for _ in range(3)]
    form = {"threshold_minutes": "5", "delay_seconds": "30"}
    preview = admin_client.post("/maintenance/sweep/", form)
    assert len(preview.context["p"].rows) == 2
    text = _text(preview)
    assert "will release 3 jobs of 1 dead worker" in text and "The first 2 of 3 jobs" in text
    assert "Sweep: release 3 jobs of 1 dead worker" in text  # the button says it
    admin_client.post("/maintenance/sweep/", {"token": _token(preview), "reason": "dead"})
    assert sorted(AuditEntry.objects.get(action="sweep").changed_ids) == sorted(held)
    assert not Job.objects.filter(id__in=held, locked_by__isnull=False).exists()


def test_sweep__dry_run_counts_every_pinned_job_by_task_beyond_the_rows_shown(
    admin_client, jobs, monkeypatch
):
    from worker_admin.operations import releasing

    monkeypatch.setattr(releasing, "PREVIEW_ROWS", 1)
    _register(jobs, "graphile_worker_dead", "20 minutes")
    for identifier in ("send_email", "send_email", "resize_image"):
        jobs.locked(by="graphile_worker_dead", age="19 minutes", identifier=identifier)
    preview = admin_client.post(
        "/maintenance/sweep/", {"threshold_minutes": "5", "delay_seconds": "30"}
    )
    assert preview.context["p"].counts == [
        ("send_email", "recover", 2),
        ("resize_image", "recover", 1),
    ]
    assert "By task: send_email recover 2, resize_image recover 1" in _text(preview)


def test_sweep__dry_run_lists_the_first_50_dead_workers_and_sweeps_them_all(admin_client, jobs):
    for n in range(52):
        _register(jobs, f"graphile_worker_dead{n:02}", "20 minutes")
    preview = admin_client.post(
        "/maintenance/sweep/", {"threshold_minutes": "5", "delay_seconds": "30"}
    )
    text = _text(preview)
    assert "graphile_worker_dead49" in text and "graphile_worker_dead50" not in text
    assert "The first 50 of 52 dead workers, by id; all of them are in the sweep." in text
    admin_client.post("/maintenance/sweep/", {"token": _token(preview), "reason": "gone"})
    assert not Worker.objects.filter(id__startswith="graphile_worker_dead").exists()


def test_sweep__dry_run_then_real_sweep(admin_client, jobs):
    _register(jobs, "graphile_worker_dead", "20 minutes")
    _register(jobs, "graphile_worker_alive", "5 seconds")
    stuck = jobs.locked(by="graphile_worker_dead", age="19 minutes")
    busy = jobs.locked(by="graphile_worker_alive", age="1 minute")
    node = jobs.locked(by="pool-abc123", age="6 hours")
    form = {"threshold_minutes": "5", "delay_seconds": "30"}
    preview = admin_client.post("/maintenance/sweep/", form)
    text = _text(preview)
    assert "dry run" in text.lower() and "graphile_worker_dead" in text
    assert "pool-abc123" in text  # listed as left alone
    assert Job.objects.get(id=stuck.id).locked_by == "graphile_worker_dead"  # nothing changed

    assert "stale after 5m without a heartbeat" in text  # the input, restated
    assert "attempts 1 → 0" in text and "locked_by graphile_worker_dead → (none)" in text
    done = admin_client.post(
        "/maintenance/sweep/", {"token": _token(preview), "reason": "host lost"}, follow=True
    )
    shown = [str(m) for m in done.context["messages"]]
    assert "Sweep: changed 1 of 1 job of 1 dead worker (1 recovered)." in shown
    recovered = Job.objects.get(id=stuck.id)
    assert recovered.locked_by is None and recovered.attempts == stuck.attempts - 1
    assert Job.objects.get(id=busy.id).locked_by == "graphile_worker_alive"
    assert Job.objects.get(id=node.id).locked_by == "pool-abc123"
    assert not Worker.objects.filter(id="graphile_worker_dead").exists()
    entry = AuditEntry.objects.get(action="sweep")
    assert entry.changed_ids == [stuck.id] and entry.actor_name == "ada"
    assert entry.reason == "host lost"


def test_force_unlock__preview_warns_on_a_fresh_heartbeat_then_unlocks(admin_client, jobs):
    _register(jobs, "graphile_worker_live", "5 seconds")
    job = jobs.locked(by="graphile_worker_live", age="2 minutes")
    jobs.sql(
        "INSERT INTO graphile_worker._private_job_queues (queue_name, locked_at, locked_by) "
        "VALUES ('q1', now(), 'graphile_worker_live')"
    )
    preview = admin_client.post(
        "/maintenance/force-unlock/", {"worker_ids": "graphile_worker_live"}
    )
    text = _text(preview)
    assert "probably alive" in text and "will release 1 job and 1 queue" in text
    assert "Force-unlock: release 1 job and 1 queue held by 1 worker id" in text
    no_reason = admin_client.post("/maintenance/force-unlock/", {"token": _token(preview)})
    assert no_reason.status_code == 400 and "Give a reason" in _text(no_reason)
    assert Job.objects.get(id=job.id).locked_by == "graphile_worker_live"
    admin_client.post("/maintenance/force-unlock/", {"token": _token(preview), "reason": "stuck"})
    assert Job.objects.get(id=job.id).locked_by is None
    assert JobQueue.objects.get(queue_name="q1").locked_by is None
    assert AuditEntry.objects.get(action="force_unlock", outcome="done").changed_ids == [job.id]


def test_cleanup__preview_then_delete_with_before_image(admin_client, jobs):
    failed = jobs.failed("old_task", queue_name="old_queue", payload={"keep": "me"})
    alive = jobs.ready("send_email", queue_name="emails")
    data = {"tasks": ["delete-permanently-failed-jobs", "gc-job-queues", "gc-task-identifiers"]}
    preview = admin_client.post("/maintenance/cleanup/", data | {"reason": "old junk"})
    text = _text(preview)
    assert "will delete 1 permanently failed job" in text and "old_queue" in text
    assert not re.search(r"\bdeleted\b", text)
    admin_client.post("/maintenance/cleanup/", {"token": _token(preview)})
    assert not Job.objects.filter(id=failed.id).exists()
    assert Job.objects.filter(id=alive.id).exists()
    assert not JobQueue.objects.filter(queue_name="old_queue").exists()
    assert JobQueue.objects.filter(queue_name="emails").exists()
    entry = AuditEntry.objects.get(action="cleanup")
    assert entry.before_image[0]["payload"] == {"keep": "me"}


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/maintenance/sweep/", {"threshold_minutes": "5", "delay_seconds": "30"}),
        ("/maintenance/force-unlock/", {"worker_ids": "graphile_worker_x"}),
        ("/maintenance/cleanup/", {"tasks": ["gc-job-queues"]}),
    ],
)
def test_maintenance__operators_are_forbidden(operator_client, jobs, url, data):
    job = jobs.locked(by="graphile_worker_x", age="1 minute")
    assert operator_client.post(url, data).status_code == 403
    assert Job.objects.get(id=job.id).locked_by == "graphile_worker_x"
    assert AuditEntry.objects.get().outcome == "rejected"


@pytest.mark.parametrize(
    ("url", "data", "message"),
    [
        ("/maintenance/sweep/", {"threshold_minutes": "0", "delay_seconds": "30"}, "greater than"),
        ("/maintenance/force-unlock/", {"worker_ids": "  "}, "at least one worker id"),
        ("/maintenance/cleanup/", {"tasks": ["drop-everything"]}, "not one of the available"),
    ],
)
def test_maintenance__bad_input_is_refused(admin_client, db, url, data, message):
    response = admin_client.post(url, data)
    assert response.status_code == 400 and message in _text(response)
    assert AuditEntry.objects.get().outcome == "rejected"


def test_sweep__dry_run_page_shows_superseded_jobs_and_the_sweep_leaves_them_failed(
    admin_client, utils, jobs
):
    from tests.test_recovery import build_superseded

    made = build_superseded(utils, jobs)
    replaced, removed, replacement = made["replaced"], made["removed"], made["replacement"]
    form = {"threshold_minutes": "5", "delay_seconds": "30"}

    preview = admin_client.post("/maintenance/sweep/", form)

    text = _text(preview)
    assert "stays failed: superseded" in text and "superseded by job" not in text
    assert "will release 4 jobs of 1 dead worker; 2 superseded stay failed" in text
    # The page names the replacements once shown (a lookup no index serves at 10M jobs).
    lookup = re.search(r'hx-get="([^"]+)"', preview.content.decode()).group(1)
    ids = sorted([replaced.id, removed.id])
    assert lookup == f"/maintenance/sweep/replacements/?ids={ids[0]},{ids[1]}"
    named = admin_client.get(lookup.replace("&amp;", "&"))
    assert named.status_code == 200
    assert f'<span id="replaced-{replaced.id}" hx-swap-oob="true">' in named.content.decode()
    assert f"superseded by job {replacement.id}" in _text(named)
    assert f'href="/jobs/{replacement.id}/"' in named.content.decode()
    assert f'id="replaced-{removed.id}"' not in named.content.decode()
    assert "Replacements found for 1 of 2 superseded jobs shown" in _text(named)
    admin_client.post("/maintenance/sweep/", {"token": _token(preview), "reason": "dead"})
    for job in (replaced, removed):
        after = Job.objects.with_state().get(id=job.id)
        assert (after.state, after.attempts, after.locked_by) == ("failed", 25, None)
    entry = AuditEntry.objects.get(action="sweep")
    assert replaced.id in entry.changed_ids and removed.id in entry.changed_ids
    assert entry.summary.endswith("(2 recovered, 2 superseded unlocked and left failed)")


def test_sweep__api_preview_and_apply_report_superseded_jobs(client, django_user_model, jobs):
    from tests.test_api import Api, user_with_token
    from tests.test_recovery import build_superseded
    from worker_admin.utils import WorkerUtils

    made = build_superseded(WorkerUtils(), jobs)
    api = Api(client, user_with_token(django_user_model, "admin", "admin1")[1])
    form = {"threshold_minutes": 5, "delay_seconds": 30}

    body = api.post("/api/maintenance/sweep/preview", form).json()

    plans = {j["id"]: (j["plan"], j["superseded"], j["replaced_by"]) for j in body["jobs"]}
    replacement = made["replacement"].id
    recover = "recover: runnable again"
    assert plans == {
        made["replaced"].id: (f"stays failed: superseded by job {replacement}", True, replacement),
        made["removed"].id: ("stays failed: superseded", True, None),
        made["plain"].id: (recover, False, None),
        made["last_try"].id: (recover, False, None),
    }
    assert body["superseded_count"] == 2
    applied = api.post(
        "/api/maintenance/sweep/apply",
        form | {"fingerprint": body["fingerprint"], "reason": "dead host"},
    ).json()
    assert sorted(applied["superseded_ids"]) == sorted([made["replaced"].id, made["removed"].id])
    assert len(applied["changed_ids"]) == 4
    for job in (made["replaced"], made["removed"]):
        assert Job.objects.with_state().get(id=job.id).state == "failed"
    entry = AuditEntry.objects.get(action="sweep", outcome="done")
    assert sorted(entry.changed_ids) == sorted(plans)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("1,two", "ids must be job ids"),
        ("1;DROP TABLE jobs", "ids must be job ids"),
        ("-5", "ids must be job ids"),
        ("9" * 30, "ids must be job ids"),
        (",".join(str(n) for n in range(1, 30)), "at most 20 jobs"),
    ],
)
def test_sweep_replacements__bad_ids_are_refused(admin_client, db, ids, message):
    response = admin_client.get("/maintenance/sweep/replacements/", {"ids": ids})
    assert response.status_code == 400 and message in _text(response)


def test_sweep__a_lock_holder_set_by_hand_without_locked_at_does_not_break_the_dry_run(
    admin_client, jobs
):
    _register(jobs, "graphile_worker_dead", "20 minutes")
    held = jobs.locked(by="graphile_worker_dead", age="19 minutes")
    odd = jobs.set(jobs.ready(), locked_by="'graphile_worker_odd'", locked_at="NULL")
    preview = admin_client.post(
        "/maintenance/sweep/", {"threshold_minutes": "5", "delay_seconds": "30"}
    )
    assert preview.status_code == 200
    assert preview.context["p"].job_ids == [held.id]
    assert odd.id not in preview.context["p"].job_ids  # no lock age: not called an orphan
