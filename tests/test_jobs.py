"""The jobs list: tabs and their counts, every filter, search, sorts, keyset pages, bad input."""

import html
import re
from urllib.parse import parse_qs, urlparse

import pytest

from worker_admin.counting import CountValue, bounded_count
from worker_admin.estimates import Estimate
from worker_admin.filters import make_cursor
from worker_admin.models import Job
from worker_admin.utils import RawJobSpec

URL = "/jobs/"


def _ids(response) -> list[int]:
    return [job.id for job in response.context["page"].jobs]


def _counts(response) -> dict[str, str]:
    return {tab.key: tab.count.display for tab in response.context["tabs"]}


def _follow(console, url: str):
    return console.get(URL + url)


def test_jobs__tabs_count_each_state(console, jobs):
    jobs.ready()
    jobs.ready()
    jobs.scheduled()
    jobs.locked()
    jobs.failed()
    jobs.retrying()
    response = console.get(URL)
    assert _counts(response) == {
        "all": "6",
        "ready": "2",
        "scheduled": "2",
        "locked": "1",
        "failed": "1",
        "retrying": "1",
    }


def test_jobs__tab_counts_follow_the_filters(console, jobs):
    jobs.ready("send_email")
    jobs.failed("send_email")
    jobs.failed("charge_card")
    response = console.get(URL, {"task": "send_email", "state": "failed"})
    assert _counts(response)["all"] == "2" and _counts(response)["failed"] == "1"
    assert len(_ids(response)) == 1


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"task": "charge_card"}, {"charge"}),
        ({"queue": "emails"}, {"queued"}),
        ({"key": "k-42"}, {"keyed"}),
        ({"locked_by": "pool-abc"}, {"locked"}),
        ({"priority_min": "5"}, {"urgent"}),
        ({"priority_max": "-1"}, {"lazy"}),
        ({"priority_min": "-1", "priority_max": "-1"}, {"lazy"}),
        ({"has_error": "yes"}, {"failed"}),
        ({"run_after": "2035-01-01T00:00"}, {"far"}),
        ({"run_before": "2000-01-02T00:00"}, {"past"}),
    ],
)
def test_jobs__each_filter(console, jobs, params, expected):
    made = {
        "charge": jobs.ready("charge_card"),
        "queued": jobs.ready("mail", queue_name="emails"),
        "keyed": jobs.ready("mail", job_key="k-42"),
        "locked": jobs.locked(by="pool-abc"),
        "urgent": jobs.ready("mail", priority=9),
        "lazy": jobs.ready("mail", priority=-1),
        "failed": jobs.failed("mail", error="boom"),
    }
    from datetime import UTC, datetime

    made["far"] = jobs.add("mail", run_at=datetime(2036, 1, 1, tzinfo=UTC))
    made["past"] = jobs.add("mail", run_at=datetime(2000, 1, 1, tzinfo=UTC))
    by_id = {job.id: name for name, job in made.items()}
    response = console.get(URL, params)
    assert response.context["filters"].problems == []
    assert {by_id[i] for i in _ids(response)} == expected


def test_jobs__created_range_and_no_error(console, jobs):
    old = jobs.set(jobs.ready(), created_at="now() - interval '3 days'")
    new = jobs.ready()
    failed = jobs.failed()
    two_days_ago = console.get(URL).context["now"].replace(microsecond=0)
    from datetime import timedelta

    cutoff = (two_days_ago - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    assert set(_ids(console.get(URL, {"created_before": cutoff}))) == {old.id}
    assert set(_ids(console.get(URL, {"created_after": cutoff}))) == {new.id, failed.id}
    assert set(_ids(console.get(URL, {"has_error": "no"}))) == {old.id, new.id}


def test_jobs__search_by_id_key_error_and_payload(console, jobs):
    by_id = jobs.ready()
    keyed = jobs.ready(job_key="invoice:7781")
    erring = jobs.failed(error="SMTPServerDisconnected: closed by smtp.example.net")
    carrying = jobs.add("mail", {"to": "zoe@example.org"})
    assert _ids(console.get(URL, {"q": str(by_id.id)})) == [by_id.id]
    assert _ids(console.get(URL, {"q": "invoice:7781"})) == [keyed.id]
    assert _ids(console.get(URL, {"q": "smtpserverdisconn"})) == [erring.id]
    assert _ids(console.get(URL, {"q": "zoe@example"})) == [carrying.id]
    assert _ids(console.get(URL, {"q": "nothing-like-this"})) == []


def test_jobs__default_sorts(console, jobs):
    from datetime import UTC, datetime

    late = jobs.add("t", run_at=datetime(2040, 1, 2, tzinfo=UTC))
    soon = jobs.add("t", run_at=datetime(2040, 1, 1, tzinfo=UTC))
    assert _ids(console.get(URL)) == [soon.id, late.id]  # newest first
    assert _ids(console.get(URL, {"state": "scheduled"})) == [soon.id, late.id]  # run_at order
    assert _ids(console.get(URL, {"sort": "oldest"})) == [late.id, soon.id]
    assert _ids(console.get(URL, {"state": "scheduled", "sort": "run_at_desc"})) == [
        late.id,
        soon.id,
    ]
    urgent_late = jobs.set(jobs.add("t", priority=-5), run_at="now() - interval '1 minute'")
    normal_early = jobs.set(jobs.add("t"), run_at="now() - interval '1 hour'")
    normal_late = jobs.set(jobs.add("t"), run_at="now() - interval '2 minutes'")
    # Ready jobs in the order workers take them: priority first, then run_at.
    assert _ids(console.get(URL, {"state": "ready"})) == [
        urgent_late.id,
        normal_early.id,
        normal_late.id,
    ]


# More pages than any test here makes: a cursor that never ends fails the test, never hangs it.
MAX_PAGES = 20


def _walk(console, params, direction="older_url"):
    pages = []
    response = console.get(URL, params)
    for _ in range(MAX_PAGES):
        pages.append(_ids(response))
        url = getattr(response.context["page"], direction)
        if not url:
            return pages, response
        response = _follow(console, url)
    pytest.fail(f"paging did not end after {MAX_PAGES} pages: {pages}")


ORDERINGS = {
    "newest": ["-id"],
    "run_at": ["run_at", "id"],
    "priority": ["priority", "run_at", "id"],
    "attempts": ["-attempts", "-id"],
    "updated": ["-updated_at", "-id"],
}


@pytest.mark.parametrize("sort", list(ORDERINGS))
def test_jobs__keyset_pages_forward_and_back_with_ties(console, utils, jobs, sort):
    from datetime import UTC, datetime

    tie = datetime(2030, 5, 5, tzinfo=UTC)
    # 63 jobs sharing run_at, priority, attempts and updated_at: only id breaks the ties.
    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(63)])
    jobs.sql(
        "UPDATE graphile_worker._private_jobs SET run_at = %s, priority = 3, updated_at = %s",
        [tie, tie],
    )
    expected = list(Job.objects.order_by(*ORDERINGS[sort]).values_list("id", flat=True))

    forward, last = _walk(console, {"sort": sort, "size": "25"})
    assert [len(page) for page in forward] == [25, 25, 13]
    assert [job_id for page in forward for job_id in page] == expected

    backward, first = [], last
    for _ in range(MAX_PAGES):
        backward.append(_ids(first))
        url = first.context["page"].newer_url
        if not url:
            break
        first = _follow(console, url)
    else:
        pytest.fail(f"paging back did not end after {MAX_PAGES} pages: {backward}")
    assert backward == forward[::-1]
    assert first.context["page"].first_url is not None  # reached by cursor, so "First" shows


def test_jobs__page_sizes(console, utils):
    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(120)])
    for size in (25, 50, 100):
        assert len(_ids(console.get(URL, {"size": str(size)}))) == size
    response = console.get(URL, {"size": "7"})
    assert len(_ids(response)) == 50
    assert any("page size" in p for p in response.context["filters"].problems)


def test_jobs__tampered_cursor_shows_first_page_with_a_message(console, utils):
    added = utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(60)])
    first = console.get(URL)
    cursor = parse_qs(urlparse(first.context["page"].older_url).query)["cursor"][0]
    tampered = cursor[:-3] + ("abc" if not cursor.endswith("abc") else "xyz")
    response = console.get(URL, {"cursor": tampered})
    assert response.status_code == 200
    assert _ids(response) == _ids(first)
    assert "not valid" in " ".join(response.context["filters"].problems)
    other_sort = make_cursor("run_at", added[0], "after")
    response = console.get(URL, {"cursor": other_sort})
    assert "another sort order" in " ".join(response.context["filters"].problems)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"created_after": "yesterday-ish"}, "created after"),
        ({"run_before": "2024-13-45"}, "run before"),
        ({"priority_min": "abc"}, "priority min"),
        ({"priority_max": "99999"}, "priority max"),
        ({"state": "exploded"}, "state"),
        ({"sort": "payload"}, "sort"),
        ({"q": "x" * 10_000}, "search"),
        ({"has_error": "perhaps"}, "has error"),
    ],
)
def test_jobs__bad_filter_values_say_so_and_show_the_unfiltered_page(
    console, jobs, params, message
):
    a, b = jobs.ready(), jobs.failed()
    response = console.get(URL, params)
    assert response.status_code == 200
    problems = " ".join(response.context["filters"].problems)
    assert message in problems and problems.startswith("Ignored the")
    assert set(_ids(response)) == {a.id, b.id}
    assert "Ignored the" in html.unescape(response.content.decode())


def test_jobs__empty_range_is_reported(console, jobs):
    jobs.ready()
    response = console.get(URL, {"priority_min": "5", "priority_max": "1"})
    assert "range is empty" in " ".join(response.context["filters"].problems)
    assert len(_ids(response)) == 1


@pytest.mark.parametrize(
    "hostile", ["'; DROP TABLE graphile_worker._private_jobs; --", "<script>alert(1)</script>"]
)
def test_jobs__hostile_text_is_inert(console, jobs, hostile):
    jobs.ready()
    response = console.get(URL, {"q": hostile, "task": hostile, "key": hostile})
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.content.decode()
    assert Job.objects.count() == 1


def test_jobs__htmx_gets_the_results_fragment(console, jobs):
    jobs.ready()
    response = console.get(URL, {"state": "ready"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="job-results"')
    assert 'hx-get="/jobs/?state=ready"' in body
    assert "<form" not in body


def test_jobs__works_without_javascript_links_keep_href(console, jobs):
    jobs.ready()
    body = console.get(URL, {"task": "send_email"}).content.decode()
    hrefs = [html.unescape(h) for h in re.findall(r'<a href="([^"]*)"', body)]
    tabs = [parse_qs(urlparse(h).query) for h in hrefs if "state=" in h]
    assert {"state": ["ready"], "task": ["send_email"]} in tabs
    assert {"state": ["failed"], "task": ["send_email"]} in tabs


def test_bounded_count__exact_below_and_at_least_above(utils):
    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(12)])
    assert bounded_count(Job.objects.all(), bound=20) == CountValue(12, "exact")
    over = bounded_count(Job.objects.all(), bound=10)
    assert over == CountValue(10, "at_least") and over.display == "10+"
    assert CountValue(1_234_567, "estimate").display == "~1.2M"
    assert "statistics" in CountValue(5, "estimate").explanation


@pytest.mark.embedded
def test_jobs__statement_timeout_says_narrow_the_filters(console, worker_schema):
    """A read blocked past the statement timeout gets the message, the filters kept.

    Another session holds an exclusive lock on the jobs table, so the page's read waits until
    statement_timeout cancels it. (This test's own transaction must not touch the jobs table
    first, or the other session's LOCK would wait for it.)
    """
    import psycopg
    from django.conf import settings
    from django.db import connection

    from tests.dbconn import server_conninfo

    # The task must exist: the list looks the name up first and skips the jobs for an unknown
    # one. Its row is in the tasks table, which the other session does not lock.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {worker_schema}._private_tasks (identifier) VALUES ('send_email')"
        )
    blocker = psycopg.connect(
        server_conninfo(),
        autocommit=False,
    )
    try:
        blocker.execute("SET lock_timeout = '5s'")
        blocker.execute(f"LOCK TABLE {worker_schema}._private_jobs IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 300")
        response = console.get(URL, {"task": "send_email"})
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 504
    text = html.unescape(response.content.decode())
    assert "This query took too long" in text and "Narrow the filters" in text
    assert "/jobs/?task=send_email" in text
    assert settings.READ_STATEMENT_TIMEOUT_MS > 300


def test_jobs__unfiltered_tabs_on_a_large_table_are_estimates(console, utils, jobs, monkeypatch):
    from worker_admin import stats

    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(300)])
    jobs.sql("ANALYZE graphile_worker._private_jobs")
    monkeypatch.setattr(stats, "EXACT_ROW_LIMIT", 100)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", 150)
    monkeypatch.setattr(stats, "SAMPLE_WINDOWS", 5)
    tabs = {tab.key: tab.count for tab in console.get(URL).context["tabs"]}
    ready = tabs["ready"]
    assert not ready.exact and ready.low <= 300 <= ready.high  # its 95 % interval holds it
    assert ready.display != "300" and ready.explanation.startswith(("Estimated", "Too rare"))
    filtered = {t.key: t.count for t in console.get(URL, {"task": "t"}).context["tabs"]}
    assert filtered["ready"] == Estimate.exact_count(300)


def _sampled_above_100_rows(monkeypatch, sample_rows: int) -> None:
    """A table of more than 100 rows counts as large: its tabs are sampled (4 windows), and a
    filter's counting pass stops after 50 rows."""
    from worker_admin import stats
    from worker_admin.views import jobs as jobs_view

    monkeypatch.setattr(stats, "EXACT_ROW_LIMIT", 100)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", sample_rows)
    monkeypatch.setattr(stats, "SAMPLE_WINDOWS", 4)
    monkeypatch.setattr(jobs_view, "PASS_BOUND", 50)


def test_jobs__filtered_tabs_on_a_large_table_never_make_up_a_number(
    console, utils, jobs, monkeypatch
):
    """A filter matching more than the pass bound: each state comes from a random sample of the
    filter's rows with its interval, and a state too rare in it for that (2 locked jobs) is
    counted up to the bound instead, exactly."""
    from worker_admin.views import jobs as jobs_view

    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(300)])
    for n in range(2):
        jobs.locked(by=f"graphile_worker_{n}", identifier="t")
    jobs.sql("ANALYZE graphile_worker._private_jobs")
    _sampled_above_100_rows(monkeypatch, sample_rows=20)
    # Room for the rare counts on a busy test machine (they give up past their budget).
    monkeypatch.setattr(jobs_view, "RARE_COUNT_BUDGET_MS", 10_000)
    tabs = {t.key: t.count for t in console.get(URL, {"task": "t"}).context["tabs"]}
    assert tabs["locked"].display == "2" and tabs["locked"].exact
    assert tabs["failed"].display == "0"
    for key, true in (("all", 302), ("ready", 300)):
        count = tabs[key]
        assert not count.exact and count.low <= true
        assert count.high is None or true <= count.high
        assert count.low > 50  # the pass saw more than its bound


def test_jobs__a_large_filters_sampled_counts_are_shared_within_the_interval(
    console, utils, jobs, monkeypatch
):
    """Users watching one filter on a large table take one sample per interval between them
    (as the overview's): the second request reuses it, another filter and a later request
    take their own, and the bounded pass still runs on every request (a filter that now
    matches few rows is counted exactly at once)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from worker_admin import snapshots, stats

    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(300)])
    utils.add_raw_jobs([RawJobSpec("u", {"i": i}) for i in range(300)])
    jobs.sql("ANALYZE graphile_worker._private_jobs")
    _sampled_above_100_rows(monkeypatch, sample_rows=40)
    monkeypatch.setattr(stats, "SAMPLE_REUSE_SECONDS", 60)

    def samples(params) -> tuple[int, dict]:
        # The list's refresh (htmx): it waits for the sample where a first load would not.
        with CaptureQueriesContext(connection) as seen:
            response = console.get(URL, params, headers={"HX-Request": "true"})
        return sum("WITH s AS MATERIALIZED" in q["sql"] for q in seen.captured_queries), _shown(
            response
        )

    first, tabs = samples({"task": "t"})
    snapshots.forget()  # as another server process, with no copy of its own
    again, same = samples({"task": "t"})
    other, _ = samples({"task": "u"})
    assert (first, again, other) == (1, 0, 1)
    assert same == tabs
    monkeypatch.setattr(stats, "SAMPLE_REUSE_SECONDS", 0)
    assert samples({"task": "t"})[0] == 1
    monkeypatch.setattr(stats, "SAMPLE_REUSE_SECONDS", 60)
    jobs.sql(
        "DELETE FROM graphile_worker._private_jobs WHERE task_id = "
        "(SELECT id FROM graphile_worker._private_tasks WHERE identifier = 't') AND id %% 10 <> 0"
    )
    fewer, tabs = samples({"task": "t"})
    assert fewer == 0 and tabs["all"] == "30"


def _shown(response) -> dict[str, str]:
    """Each tab's count as the page shows it (a refresh's fragment has no template context)."""
    import re

    from worker_admin.filters import STATE_TABS

    found = re.findall(
        r'<span class="count" title="[^"]*">([^<]*)</span>', response.content.decode()
    )
    assert len(found) == len(STATE_TABS)
    return dict(zip(STATE_TABS, found, strict=True))


def test_jobs__a_first_load_shows_the_rows_without_waiting_for_a_new_filters_sample(
    console, utils, jobs, monkeypatch
):
    """A large filter nobody has sampled in the interval: the first load shows its rows at once,
    with what the counting pass saw ("50+") as its counts, marked as being counted, and asks
    for the estimates right away (hx-trigger "load"); that request takes the sample, and the
    next viewer's first load shows the estimates without taking another."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from worker_admin import stats

    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(300)])
    jobs.sql("ANALYZE graphile_worker._private_jobs")
    _sampled_above_100_rows(monkeypatch, sample_rows=40)
    monkeypatch.setattr(stats, "SAMPLE_REUSE_SECONDS", 60)

    def load(**headers):
        with CaptureQueriesContext(connection) as seen:
            response = console.get(URL, {"task": "t"}, headers=headers)
        sampled = sum("WITH s AS MATERIALIZED" in q["sql"] for q in seen.captured_queries)
        return response, sampled, _shown(response)

    first, sampled, tabs = load()
    assert sampled == 0 and first.context["counts_pending"]
    assert len(first.context["page"].jobs) > 0
    assert tabs["all"] == "50+" and tabs["locked"] == "…"
    html = first.content.decode()
    assert 'hx-trigger="load, every' in html and 'aria-busy="true"' in html and "Counting…" in html

    follow, sampled, tabs = load(**{"HX-Request": "true"})
    html = follow.content.decode()
    assert sampled == 1 and "Counting…" not in html and 'hx-trigger="every' in html
    assert tabs["all"] != "50+"  # the sample's estimate (a range with so few windows)

    later, sampled, same = load()
    assert sampled == 0 and not later.context["counts_pending"] and same == tabs


def test_jobs__rare_states_of_a_large_filter_are_counted_together_within_one_budget(
    utils, jobs, monkeypatch
):
    """States too rare in the sample: one pass over their union counts them all exactly (one
    statement, not one per state); when the union holds more than the bound, each is counted on
    its own; out of budget, none is (the sample's ranges stay)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from worker_admin.views import jobs as jobs_view

    utils.add_raw_jobs([RawJobSpec("t", {"i": i}) for i in range(60)])
    for n in range(2):
        jobs.locked(by=f"graphile_worker_{n}", identifier="t")
    for _ in range(3):
        jobs.failed(identifier="t")
    jobs.retrying(identifier="t")
    narrowed = Job.objects.using(jobs.utils.alias).filter(task__identifier="t")
    rare = ["locked", "failed", "retrying"]
    monkeypatch.setattr(jobs_view, "RARE_COUNT_BUDGET_MS", 10_000)  # a busy test machine

    def counting(queries) -> list[str]:
        return [q["sql"] for q in queries if "COUNT" in q["sql"]]

    with CaptureQueriesContext(connection) as queries:
        found = jobs_view._rare_counts(narrowed, rare, bound=50)
    assert found == {"locked": 2, "failed": 3, "retrying": 1}
    assert len(counting(queries)) == 1

    with CaptureQueriesContext(connection) as queries:  # with ready: 60 + 6 > 50
        found = jobs_view._rare_counts(narrowed, ["ready", *rare], bound=50)
    assert found == {"ready": 51, "locked": 2, "failed": 3, "retrying": 1}  # 51: past the bound
    assert len(counting(queries)) == 5

    monkeypatch.setattr(jobs_view, "RARE_COUNT_BUDGET_MS", 0)
    assert jobs_view._rare_counts(narrowed, ["ready", *rare], bound=50) == dict.fromkeys(
        ["ready", *rare]
    )


def test_bounded_count_within__gives_up_past_its_budget_and_restores_the_timeout(jobs):
    from django.db import connections

    from worker_admin.counting import bounded_count_within

    jobs.ready()
    alias = jobs.utils.alias
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        before = cursor.fetchone()[0]
    slow = Job.objects.using(alias).extra(where=["pg_sleep(0.2) IS NOT NULL"])
    assert bounded_count_within(slow, 10, budget_ms=20) is None
    assert bounded_count_within(Job.objects.using(alias), 10, budget_ms=5_000) == 1
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        assert cursor.fetchone()[0] == before
