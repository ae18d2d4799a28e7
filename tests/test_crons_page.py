"""The Crons page, GET /api/crons and graphile_worker_cron_missed, on real rows of
_private_known_crontabs and real cron jobs (payloads with `_cron`)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.test_api import Api, user_with_token
from tests.test_metrics import by_label, scrape
from worker_admin import crons

CRONTAB = """
# nightly digest, every day at 04:00 UTC
0 4 * * * send_digest ?id=nightly_digest&queue=mail&priority=2
*/5 * * * * ping_hosts
0 0 1 1 * new_year ?fill=1d {greeting: "hi"}
61 * * * * broken_minute
"""


@pytest.fixture
def crontab(settings):
    settings.GRAPHILE_WORKER_CRONTAB = CRONTAB
    settings.CRON_MISSED_TOLERANCE_SECONDS = 60
    return CRONTAB


def known(jobs, identifier: str, known_since: str, last_execution: str | None) -> None:
    """A row as a worker writes it (SQL expressions, evaluated by the database clock)."""
    jobs.sql(
        f"INSERT INTO {jobs.q}._private_known_crontabs (identifier, known_since, last_execution) "
        f"VALUES (%s, {known_since}, {last_execution or 'NULL'})",
        [identifier],
    )


@pytest.fixture
def missed_digest(jobs, crontab):
    """nightly_digest last ran 3 days ago: its daily due time has passed since, unfired."""
    known(jobs, "nightly_digest", "now() - interval '30 days'", "now() - interval '3 days'")
    # ping_hosts ran at its latest due time (a whole 5-minute mark), so it is on time.
    known(
        jobs,
        "ping_hosts",
        "now() - interval '1 day'",
        "date_trunc('hour', now()) + floor(extract(minute from now()) / 5) * interval '5 minutes'",
    )
    known(jobs, "retired_job", "now() - interval '90 days'", "now() - interval '60 days'")
    jobs.add("send_digest", {"_cron": {"ts": "2026-01-01T04:00:00Z", "backfilled": False}})
    jobs.add("send_digest", {"_cron": {"ts": "2026-01-02T04:00:00Z", "backfilled": True}})
    jobs.add("send_digest", {"to": "not a cron job"})
    jobs.add("orphan_task", {"_cron": {"ts": "2026-01-01T00:00:00Z", "backfilled": False}})


def by_identifier(report) -> dict:
    return {row.identifier: row for row in report.rows}


def test_report__merges_the_database_and_the_crontab(missed_digest, settings):
    report = crons.cron_report(settings.WORKER_DATABASE)
    rows = by_identifier(report)
    assert set(rows) == {"nightly_digest", "ping_hosts", "new_year", "retired_job"}
    assert rows["nightly_digest"].status == crons.MISSED
    assert rows["ping_hosts"].status == crons.OK
    assert rows["new_year"].status == crons.NOT_LOADED
    assert rows["retired_job"].status == crons.NOT_IN_CRONTAB
    assert report.rows[0].identifier == "nightly_digest"  # the worst first
    digest = rows["nightly_digest"]
    assert digest.words == "At 04:00"
    assert digest.previous_due < report.now < digest.next_due
    assert digest.previous_due.hour == 4 and digest.previous_due.minute == 0
    assert digest.queued.count == 2  # the job without _cron is not a cron job
    assert "orphan_task" not in rows  # cron jobs are counted for the tasks of the rows only
    assert report.queued_exact
    assert [bad.line_number for bad in report.crontab.problems] == [6]
    assert report.missed == 1


def test_report__without_a_crontab_lists_what_the_database_knows(jobs, settings):
    settings.GRAPHILE_WORKER_CRONTAB = ""
    known(jobs, "nightly_digest", "now() - interval '3 days'", None)
    report = crons.cron_report(settings.WORKER_DATABASE)
    assert report.crontab is None
    (row,) = report.rows
    assert row.status == crons.UNKNOWN and row.next_due is None and row.last_execution is None


def test_missed__within_the_tolerance_is_not_missed(jobs, settings):
    """Just after a due time the worker has not queued the job yet: not missed before the
    tolerance has passed, missed after it."""
    settings.GRAPHILE_WORKER_CRONTAB = "* * * * * every_minute"
    known(jobs, "every_minute", "now() - interval '1 day'", "now() - interval '90 seconds'")
    settings.CRON_MISSED_TOLERANCE_SECONDS = 600
    assert by_identifier(crons.cron_report(settings.WORKER_DATABASE))["every_minute"].status == (
        crons.OK
    )
    settings.CRON_MISSED_TOLERANCE_SECONDS = 0
    assert by_identifier(crons.cron_report(settings.WORKER_DATABASE))["every_minute"].status == (
        crons.MISSED
    )


def test_never_due__never_missed_and_shown_as_never(console, jobs, settings):
    settings.GRAPHILE_WORKER_CRONTAB = "0 0 31 2 * feb31"
    known(jobs, "feb31", "now() - interval '3 years'", None)
    (row,) = crons.cron_report(settings.WORKER_DATABASE).rows
    assert row.status == crons.OK and row.next_due is None and row.previous_due is None
    assert "the workers accept it and never run it" in console.get("/crons/").content.decode()


def test_missed__never_executed_counts_from_known_since(jobs, settings):
    settings.GRAPHILE_WORKER_CRONTAB = "0 4 * * * daily\n0 4 * * * fresh ?id=fresh"
    known(jobs, "daily", "now() - interval '3 days'", None)
    known(jobs, "fresh", "now()", None)
    rows = by_identifier(crons.cron_report(settings.WORKER_DATABASE))
    assert rows["daily"].status == crons.MISSED
    assert rows["fresh"].status == crons.OK


def test_page__shows_the_missed_cron_and_the_bad_line(console, missed_digest):
    response = console.get(reverse("worker_admin:crons"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "nightly_digest" in html and "missed" in html
    assert "At 04:00" in html
    assert "minute value 61 is outside 0-59." in html
    assert "refuses a crontab with any such line" in html
    assert 'class="row-danger"' in html
    assert 'aria-current="page"' in html or "Crons" in html


def test_page__htmx_refresh_is_the_table_only(console, missed_digest):
    response = console.get(reverse("worker_admin:crons"), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="cron-table"')
    assert "<nav" not in html


def test_page__empty_state(console, settings):
    settings.GRAPHILE_WORKER_CRONTAB = ""
    html = console.get(reverse("worker_admin:crons")).content.decode()
    assert "No worker has recorded a cron item yet" in html


@pytest.mark.parametrize(
    "setting",
    [
        "/nonexistent/crontab",
        "* * * * * ok\n\x00\x01 garbage",
        "* * * * * " + "x" * 20_000,
        "\u2028 * * * * * task",
        "* * * * * t ?id=" + "%ff" * 50,
    ],
)
def test_page__a_bad_crontab_setting_is_a_listed_problem_not_a_500(console, settings, setting):
    settings.GRAPHILE_WORKER_CRONTAB = setting
    response = console.get(reverse("worker_admin:crons"))
    assert response.status_code == 200


def test_page__a_crontab_file(console, settings, tmp_path, jobs):
    path = tmp_path / "crontab"
    path.write_text("0 4 * * * send_digest ?id=nightly_digest\nnot a line\n")
    settings.GRAPHILE_WORKER_CRONTAB = str(path)
    html = console.get(reverse("worker_admin:crons")).content.decode()
    assert f"file {path}" in html and "nightly_digest" in html and "not a line" in html


def test_page__a_missing_crontab_file_says_so(console, settings):
    settings.GRAPHILE_WORKER_CRONTAB = "/nonexistent/crontab"
    html = console.get(reverse("worker_admin:crons")).content.decode()
    assert "cannot read it" in html


def test_viewer_can_read_the_page(login_as, missed_digest):
    client = login_as("viewer", "watcher")
    assert client.get(reverse("worker_admin:crons")).status_code == 200


@pytest.fixture
def viewer_api(client, django_user_model):
    return Api(client, user_with_token(django_user_model, "viewer", "cron_viewer")[1])


def test_api__lists_the_crons_with_the_missed_one(viewer_api, missed_digest):
    api = viewer_api
    response = api.get("/api/crons")
    assert response.status_code == 200, response.content
    body = response.json()
    rows = {row["identifier"]: row for row in body["crons"]}
    digest = rows["nightly_digest"]
    assert digest["missed"] is True and digest["status"] == "missed"
    assert digest["schedule_in_words"] == "At 04:00"
    assert digest["item"]["options"]["queue"] == "mail"
    assert digest["item"]["options"]["priority"] == 2
    assert digest["queued_jobs"] == 2
    assert rows["new_year"]["item"]["payload"] == {"greeting": "hi"}
    assert rows["new_year"]["item"]["options"]["fill_seconds"] == 86400
    assert rows["retired_job"]["status"] == "not_in_crontab"
    assert body["crontab"]["refused_by_workers"] is True
    assert body["crontab"]["problems"][0]["line"] == 6
    assert body["missed_tolerance_seconds"] == 60


def test_api__refuses_unknown_parameters_and_needs_a_token(client, viewer_api, crontab):
    assert Api(client, None).get("/api/crons").status_code == 401
    assert viewer_api.get("/api/crons", status="missed").status_code == 422


def test_metric__cron_missed_per_identifier(client, missed_digest):
    missed = by_label(scrape(client), "graphile_worker_cron_missed", "identifier")
    # Every crontab item, 1 for the missed one; retired_job has no schedule, so no series.
    assert missed == {"nightly_digest": 1, "ping_hosts": 0, "new_year": 0}


def test_metric__absent_without_a_crontab(client, jobs, settings):
    settings.GRAPHILE_WORKER_CRONTAB = ""
    known(jobs, "nightly_digest", "now() - interval '3 days'", None)
    assert "graphile_worker_cron_missed" not in scrape(client)


def test_queued__a_scan_limit_bounds_the_rows_read(jobs, settings):
    """On a large table only the first rows are read: the counts are lower bounds."""
    for n in range(3):
        jobs.add("nightly", {"_cron": {"ts": f"2026-01-0{n + 1}T04:00:00Z", "backfilled": False}})
    jobs.add("nightly", [1, 2])  # not an object: not a cron job
    jobs.add("nightly", {"_cron": None, "x": "\u0000"})  # json that jsonb could not hold
    jobs.add("other", {"_cron": {"ts": "2026-01-01T04:00:00Z", "backfilled": False}})
    alias = settings.WORKER_DATABASE
    assert crons.queued_cron_jobs(alias, {"nightly"}, None)["nightly"].count == 4
    assert crons.queued_cron_jobs(alias, {"nightly"}, 2)["nightly"].count == 2
    assert set(crons.queued_cron_jobs(alias, {"nightly", "other"}, None)) == {"nightly", "other"}
    assert crons.queued_cron_jobs(alias, set(), None) == {}
