"""The index guard (worker_admin/index_advice.py, views/index_guard.py): a read that an absent
opt-in index would serve, on a large jobs table, gets one budget per page and then a page that
names the index, never a long wait and never the "rolled back" wording of a write.

The table is really large enough to be slow: ~300,000 jobs built with one INSERT … SELECT
generate_series and analysed, so pg_class.reltuples says so. UNINDEXED_READ_ROWS is lowered
below that and the budget to 1 ms, which no scan of 300,000 rows fits in. Nothing in the
database is replaced by a fake."""

from __future__ import annotations

import html
import re

import pytest
from django.db import connections

from tests.test_api import Api, user_with_token
from tests.test_recovery import register
from worker_admin import index_advice
from worker_admin.filters import parse_filters
from worker_admin.index_advice import FAILING, LOCKED, TASK, IndexNeeded, guarded
from worker_admin.indexes import INDEXES
from worker_admin.middleware import timeout_response
from worker_admin.models import Job
from worker_admin.operations import job_actions, sweep
from worker_admin.operations.job_actions import ActionRequest
from worker_admin.recovery import SweepStaleWorkersOptions
from worker_admin.roles import ensure_groups

BIG = 300_000
ACTIONS = "/jobs/actions/"


@pytest.fixture(autouse=True)
def _fresh_index_advice():
    index_advice.clear_cache()
    yield
    index_advice.clear_cache()


@pytest.fixture
def tight(settings):
    """A "large" table from 100,000 rows on, and a budget no scan of them fits in."""
    settings.UNINDEXED_READ_ROWS = 100_000
    settings.UNINDEXED_READ_TIMEOUT_MS = 1
    return settings


@pytest.fixture
def big(jobs):
    """~300,000 ready jobs of task "bulk", analysed; then one job of the rare task "rare",
    one locked by a stale registered worker, one failed."""
    q = jobs.q
    [(task_id,)] = jobs.sql(
        f"INSERT INTO {q}._private_tasks (identifier) VALUES ('bulk') RETURNING id"
    )
    jobs.sql(
        f"INSERT INTO {q}._private_jobs (task_id, run_at) "
        "SELECT %s, now() - interval '1 minute' FROM generate_series(1, %s)",
        [task_id, BIG],
    )
    jobs.sql(f"ANALYZE {q}._private_jobs")
    rare = jobs.ready("rare")
    register(jobs, "graphile_worker_dead", "20 minutes")
    held = jobs.locked(by="graphile_worker_dead", age="19 minutes")
    failed = jobs.failed("bulk")
    return {"rare": rare, "held": held, "failed": failed}


def create_index(jobs, name: str) -> None:
    """The opt-in index as `console_indexes create` builds it (not CONCURRENTLY: a test runs
    inside a transaction)."""
    jobs.sql(f"CREATE INDEX {name} ON {jobs.q}._private_jobs {INDEXES[name].definition}")
    index_advice.clear_cache()


def text_of(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def assert_index_page(response, name: str) -> str:
    assert response.status_code == 504, response.content[:500]
    text = text_of(response)
    assert "This needs an index" in text
    assert f"python3 manage.py console_indexes create {name}" in text
    assert f"python3 manage.py console_indexes preview {name}" in text
    assert "rolled back" not in text and "took too long" not in text
    assert "Nothing was changed; this was only a read." in text
    return text


# -- the pages -------------------------------------------------------------------------------


def test_jobs_list__task_filter_without_its_index_names_it_and_offers_narrower_lists(
    tight, big, console
):
    text = assert_index_page(console.get("/jobs/?task=rare"), "console_jobs_task")
    assert "one task's jobs" in text
    assert "Or narrow the filters" in text
    page = console.get("/jobs/?task=rare").content.decode()
    assert 'href="/jobs/?task=rare&amp;state=ready"' in page
    assert 'href="/jobs/"' in page  # without the task filter


def test_jobs_list__the_same_page_answers_once_the_index_exists(tight, big, jobs, console):
    create_index(jobs, "console_jobs_task")
    response = console.get("/jobs/?task=rare")
    assert response.status_code == 200
    assert f"/jobs/{big['rare'].id}/" in response.content.decode()


def test_jobs_list__htmx_gets_the_message_in_place_with_200(tight, big, console):
    response = console.get(
        "/jobs/?state=failed", headers={"HX-Request": "true", "HX-Target": "job-results"}
    )
    assert response.status_code == 200
    assert response["HX-Retarget"] == "#job-results"
    assert response["HX-Reswap"] == "outerHTML"
    body = response.content.decode()
    assert "<html" not in body and 'id="job-results"' in body
    assert "console_indexes create console_jobs_failing" in body
    assert "hx-trigger" not in body  # the poll that asked is replaced, so it stops


def test_jobs_list__a_small_table_and_an_unfiltered_list_are_never_guarded(settings, big, console):
    settings.UNINDEXED_READ_TIMEOUT_MS = 1
    settings.UNINDEXED_READ_ROWS = BIG * 10  # the table is "small"
    assert console.get("/jobs/?task=rare").status_code == 200
    settings.UNINDEXED_READ_ROWS = 100_000
    index_advice.clear_cache()
    assert console.get("/jobs/?state=ready").status_code == 200  # jobs_main_index serves it


def test_workers_and_worker_pages__need_the_locked_index(tight, big, jobs, console):
    assert_index_page(console.get("/workers/"), "console_jobs_locked")
    assert_index_page(console.get("/workers/graphile_worker_dead/"), "console_jobs_locked")
    create_index(jobs, "console_jobs_locked")
    assert console.get("/workers/").status_code == 200
    assert console.get("/workers/graphile_worker_dead/").status_code == 200


def test_workers_and_sweep__within_the_budget_answer_and_name_the_index_that_would_help(
    settings, big, jobs, console, login_as
):
    """Without console_jobs_locked the workers page and the sweep's dry run scan every job: when
    that fits the budget they answer, and say which index would make them fast."""
    settings.UNINDEXED_READ_ROWS = 100_000
    settings.UNINDEXED_READ_TIMEOUT_MS = 60_000
    hint = "Without the opt-in index console_jobs_locked"
    page = text_of(console.get("/workers/"))
    assert "graphile_worker_dead" in page and hint in page
    assert "python3 manage.py console_indexes create console_jobs_locked" in page
    assert hint in text_of(console.get("/workers/graphile_worker_dead/"))
    ensure_groups()
    admin = login_as("admin", "boss")
    form = {"threshold_minutes": "5", "delay_seconds": "30"}
    dry_run = text_of(admin.post("/maintenance/sweep/", form))
    assert "graphile_worker_dead" in dry_run and hint in dry_run
    create_index(jobs, "console_jobs_locked")
    assert hint not in text_of(console.get("/workers/"))
    assert hint not in text_of(admin.post("/maintenance/sweep/", form))


def test_failures_page__needs_the_failing_index(tight, big, jobs, console):
    assert_index_page(console.get("/failures/"), "console_jobs_failing")
    create_index(jobs, "console_jobs_failing")
    response = console.get("/failures/")
    assert response.status_code == 200
    assert "boom" in text_of(response)


# -- previews and dry runs: reads; their apply is a write and never guarded -----------------


def test_bulk_preview__by_task_names_the_index_and_its_apply_is_never_cut(
    tight, big, jobs, login_as
):
    client = login_as("operator", "op")
    form = {"action": "run_now", "scope": "filter"}
    assert_index_page(client.post(ACTIONS + "?task=rare", form), "console_jobs_task")
    # The command line's preview (no budget) pins the job; the page then applies it: the apply
    # reads the same filter again, unindexed, and must finish, not stop at the 1 ms budget.
    later = jobs.set(big["rare"], run_at="now() + interval '1 hour'")
    user = client.session["_auth_user_id"]
    from django.contrib.auth import get_user_model

    actor = get_user_model().objects.get(pk=user)
    filters = parse_filters({"task": "rare"})
    request = ActionRequest(job_actions.ActionKind.RUN_NOW, job_actions.filter_target(filters))
    shown = job_actions.preview(actor, request)
    assert shown.count == 1
    done = client.post(ACTIONS + "?task=rare", form | {"token": shown.token})
    assert done.status_code == 302, text_of(done)[:500]
    assert Job.objects.get(id=later.id).run_at < later.run_at  # run now: it ran to the end


def test_sweep_dry_run__names_the_locked_index_and_never_speaks_of_rolling_back(
    tight, big, jobs, login_as
):
    ensure_groups()
    client = login_as("admin", "boss")
    client.session  # noqa: B018
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="boss").update(is_staff=True)
    form = {"threshold_minutes": "5", "delay_seconds": "30"}
    text = assert_index_page(client.post("/maintenance/sweep/", form), "console_jobs_locked")
    assert "Create it from the Maintenance page" in text
    create_index(jobs, "console_jobs_locked")
    response = client.post("/maintenance/sweep/", form)
    assert response.status_code == 200
    assert "graphile_worker_dead" in text_of(response)


def test_sweep_dry_run__with_the_guard_decides_as_the_library_sweep(settings, utils, jobs):
    """On a normal dataset, the guarded dry run (a budget it never reaches) finds exactly what
    worker_admin.recovery's dry run finds: stale, resilient within and past 3x, orphans, Node."""
    settings.UNINDEXED_READ_ROWS = -1  # every table is "large": the guard is on
    register(jobs, "graphile_worker_stale", "20 minutes")
    register(jobs, "graphile_worker_resilient", "10 minutes")
    register(jobs, "graphile_worker_resilient_old", "16 minutes")
    register(jobs, "graphile_worker_fresh", "10 seconds")
    jobs.locked(by="graphile_worker_stale", age="19 minutes")
    for worker in ("graphile_worker_resilient", "graphile_worker_resilient_old"):
        job = jobs.locked(by=worker, age="9 minutes")
        jobs.set(job, flags="""'{"infrastructure_resilient": true}'::jsonb""")
    jobs.locked(by="graphile_worker_orphan", age="7 minutes")
    jobs.locked(by="pool-abc123", age="2 hours")
    jobs.locked(by="graphile_worker_fresh", age="1 minute")
    jobs.sql(f"ANALYZE {jobs.q}._private_jobs")
    assert index_advice.missing(utils.alias, (LOCKED,))[0] == [LOCKED]

    for include_node in (False, True):
        shown = sweep.preview(
            "alice", sweep.timedelta(minutes=5), sweep.timedelta(seconds=30), include_node,
            "check", index_budget=True,
        )  # fmt: skip
        library = utils.sweep_stale_workers(
            SweepStaleWorkersOptions(dry_run=True, include_node_lock_holders=include_node)
        )
        assert dict(shown.workers) == library.reasons
        assert dict(shown.excluded) == library.excluded
        assert sorted(shown.job_ids) == sorted(job.id for job in library.jobs)
    assert "graphile_worker_resilient" in dict(shown.excluded)
    assert "graphile_worker_resilient_old" in dict(shown.workers)


# -- the JSON API ----------------------------------------------------------------------------


def test_api__reads_answer_504_json_with_the_index_and_a_hint(
    tight, big, client, django_user_model
):
    ensure_groups()
    api = Api(client, user_with_token(django_user_model, "operator", "apiop")[1])
    for path, query, name in (
        ("/api/jobs", {"task": "rare"}, "console_jobs_task"),
        ("/api/jobs", {"state": "locked"}, "console_jobs_locked"),
        ("/api/workers", {}, "console_jobs_locked"),
        ("/api/failures", {}, "console_jobs_failing"),
    ):
        response = api.get(path, **query)
        assert response.status_code == 504, (path, response.content[:300])
        body = response.json()
        assert body["index"] == name
        assert f"console_indexes create {name}" in body["hint"]
        assert "without " + name in body["error"]
        assert "rolled back" not in response.content.decode()
    preview = api.post(
        "/api/jobs/actions/preview", {"action": "run_now", "filter": {"task": "rare"}}
    )
    assert preview.status_code == 504, preview.content[:300]
    assert preview.json()["index"] == "console_jobs_task"


# -- the guard itself ------------------------------------------------------------------------


def _timeout(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_guard__one_budget_for_all_the_reads_inside(settings, utils, jobs):
    """Each read fits the budget alone; together they do not: the guard stops at the one that
    would pass the page's budget, and the connection's own timeout is back afterwards."""
    jobs.sql(f"ANALYZE {jobs.q}._private_jobs")  # reltuples 0: above -1, so "large"
    settings.UNINDEXED_READ_ROWS = -1
    settings.UNINDEXED_READ_TIMEOUT_MS = 1000
    usual = _timeout(utils.alias)
    done = 0
    with (
        pytest.raises(IndexNeeded) as raised,
        guarded(utils.alias, TASK, FAILING, reading="five reads"),
    ):
        for _ in range(5):  # 0.3 s each: under the budget alone, 1.5 s together
            with connections[utils.alias].cursor() as cursor:
                cursor.execute("SELECT pg_sleep(0.3)")
            done += 1
    assert 1 <= done <= 3
    assert [need.index for need in raised.value.needs] == [
        "console_jobs_task",
        "console_jobs_failing",
    ]
    assert raised.value.reading == "five reads"
    assert _timeout(utils.alias) == usual
    with guarded(utils.alias, TASK):  # a read within budget: the setting is restored too
        with connections[utils.alias].cursor() as cursor:
            cursor.execute("SELECT 1")  # runs with what is left of the budget
        assert _timeout(utils.alias).endswith("ms")
    assert _timeout(utils.alias) == usual


def test_guard__other_errors_pass_through_and_an_index_present_means_no_budget(
    settings, utils, jobs
):
    jobs.sql(f"ANALYZE {jobs.q}._private_jobs")
    settings.UNINDEXED_READ_ROWS = -1
    settings.UNINDEXED_READ_TIMEOUT_MS = 1
    with pytest.raises(ZeroDivisionError), guarded(utils.alias, TASK):
        1 / 0  # noqa: B018
    create_index(jobs, "console_jobs_task")
    usual = _timeout(utils.alias)
    with guarded(utils.alias, TASK):
        assert _timeout(utils.alias) == usual  # no transaction, no SET: unchanged
        with connections[utils.alias].cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.01)")


# -- the generic timeout page: a preview or dry run changed nothing --------------------------


@pytest.mark.parametrize(
    ("path", "form", "title"),
    [
        ("/maintenance/sweep/", {"threshold_minutes": "5"}, "This preview took too long"),
        ("/jobs/actions/", {"action": "run_now", "scope": "filter"}, "This preview took too long"),
        ("/maintenance/sweep/", {"token": "t", "reason": "r"}, "This took too long"),
    ],
)
def test_timeout_page__a_preview_is_not_told_its_change_was_rolled_back(
    rf, operator, path, form, title
):
    request = rf.post(path, form)
    request.user = operator
    request.htmx = False
    text = text_of(timeout_response(request))
    assert title in text
    if "token" in form:  # the confirmed write: it was cut short and rolled back
        assert "rolled back" in text
    else:
        assert "rolled back" not in text and "Nothing was changed" in text


def test_guard__in_autocommit_it_is_its_own_transaction_and_leaves_the_connection_usable(
    transactional_db, settings
):
    """Outside a test's transaction, as in a request: the guard opens and ends a transaction;
    after a budget runs out the connection works, with its usual timeout."""
    alias = settings.WORKER_DATABASE
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {settings.GRAPHILE_WORKER_SCHEMA}._private_jobs")
    settings.UNINDEXED_READ_ROWS = -1
    settings.UNINDEXED_READ_TIMEOUT_MS = 200
    usual = _timeout(alias)
    assert not connection.in_atomic_block
    with guarded(alias, LOCKED):
        assert connection.in_atomic_block
    assert not connection.in_atomic_block
    with pytest.raises(IndexNeeded), guarded(alias, LOCKED), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1)")
    assert not connection.in_atomic_block
    assert _timeout(alias) == usual
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
