"""/metrics: parsed with prometheus_client's own parser, and every number checked against SQL
written here, independently of the console's code. The test's transaction fixes now(), so the
ages read by the scrape and by the test are the same instant."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from tests.dbconn import server_conninfo
from tests.test_healthz import closed_port, console_process
from worker_admin import audit, metrics, stats
from worker_admin.audit import AuditEntry
from worker_admin.utils import RawJobSpec

Samples = dict[str, dict[tuple, float]]

READY = "locked_at IS NULL AND attempts < max_attempts AND run_at <= now()"
SCHEDULED = "locked_at IS NULL AND attempts < max_attempts AND run_at > now()"
LOCKED = "locked_at IS NOT NULL"
FAILED = "locked_at IS NULL AND attempts >= max_attempts"
RETRYING = "locked_at IS NULL AND attempts < max_attempts AND attempts > 0"
STATES = {"ready": READY, "scheduled": SCHEDULED, "locked": LOCKED, "failed": FAILED}


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def scrape(client, **extra) -> Samples:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def by_label(samples: Samples, name: str, label: str, **fixed) -> dict[str, float]:
    """{label value: sample value} for the samples of `name` that carry the `fixed` labels."""
    found = {}
    for key, number in samples.get(name, {}).items():
        labels = dict(key)
        if all(labels.get(k) == v for k, v in fixed.items()):
            found[labels[label]] = number
    return found


def register(jobs, worker_id: str, heartbeat_age: str) -> None:
    jobs.sql(
        f"INSERT INTO {jobs.q}._private_workers (id, last_heartbeat_at) "
        "VALUES (%s, now() - %s::interval)",
        [worker_id, heartbeat_age],
    )


@pytest.fixture
def fleet(jobs):
    """Jobs in every state across three tasks and two queues, old and fresh locks, registered
    fresh and stale workers, an unregistered holder and a holder of a queue lock only."""
    jobs.ready("send_email")
    jobs.ready("send_email", queue_name="emails")
    old_ready = jobs.ready("resize_image", queue_name="images")
    jobs.set(old_ready, run_at="now() - interval '47 minutes'")
    jobs.scheduled("nightly_report")
    jobs.retrying("send_email", queue_name="emails")
    retry_now = jobs.retrying("resize_image")
    jobs.set(retry_now, run_at="now() - interval '5 seconds'")  # retrying and ready
    jobs.failed("resize_image", queue_name="images")
    jobs.failed("send_email")
    jobs.locked(by="graphile_worker_aa", age="2 minutes")
    jobs.locked(by="graphile_worker_bb", age="2 hours", queue_name="emails")
    jobs.locked(by="graphile_worker_cc", age="3 hours 20 minutes")
    jobs.locked(by="pool-7f3a", age="61 minutes")
    jobs.locked(by="pool-7f3a", age="10 minutes")
    jobs.sql(
        f"UPDATE {jobs.q}._private_job_queues SET locked_by = 'graphile_worker_dd', "
        "locked_at = now() - interval '30 minutes' WHERE queue_name = 'images'"
    )
    register(jobs, "graphile_worker_aa", "10 seconds")
    register(jobs, "graphile_worker_bb", "12 minutes")
    register(jobs, "graphile_worker_ee", "4 minutes")  # fresh, holds nothing
    return jobs


def expected(jobs) -> dict:
    """What the database says, in SQL written for this test."""
    q = jobs.q

    def one(sql: str):
        return jobs.sql(sql)[0][0]

    def grouped(select: str, join: str) -> dict[tuple[str, str], int]:
        found = {}
        for state, predicate in {**STATES, "retrying": RETRYING}.items():
            for name, n in jobs.sql(
                f"SELECT {select}, count(*) FROM {q}._private_jobs j {join} "
                f"WHERE {predicate.replace('locked_at', 'j.locked_at')} GROUP BY 1"
            ):
                found[(name, state)] = n
        return found

    holders = f"""
        SELECT locked_by FROM {q}._private_jobs WHERE locked_at IS NOT NULL
        UNION SELECT locked_by FROM {q}._private_job_queues WHERE locked_at IS NOT NULL"""
    return {
        "states": {
            s: one(f"SELECT count(*) FROM {q}._private_jobs WHERE {p}") for s, p in STATES.items()
        },
        "retrying": one(f"SELECT count(*) FROM {q}._private_jobs WHERE {RETRYING}"),
        "by_task": grouped("t.identifier", f"JOIN {q}._private_tasks t ON t.id = j.task_id"),
        "by_queue": grouped(
            "jq.queue_name", f"JOIN {q}._private_job_queues jq ON jq.id = j.job_queue_id"
        ),
        "oldest_ready_age": float(
            one(
                f"SELECT extract(epoch FROM now() - min(run_at)) FROM {q}._private_jobs "
                f"WHERE {READY}"
            )
        ),
        "locked_over_hour": one(
            f"SELECT count(*) FROM {q}._private_jobs WHERE locked_at < now() - interval '1 hour'"
        ),
        "oldest_lock_age": float(
            one(f"SELECT extract(epoch FROM now() - min(locked_at)) FROM {q}._private_jobs")
        ),
        "registered": one(f"SELECT count(*) FROM {q}._private_workers"),
        "stale": one(
            f"SELECT count(*) FROM {q}._private_workers "
            "WHERE last_heartbeat_at < now() - interval '5 minutes'"
        ),
        "holders": one(f"SELECT count(*) FROM ({holders}) h"),
        "unregistered": one(
            f"SELECT count(*) FROM ({holders}) h "
            f"WHERE locked_by NOT IN (SELECT id FROM {q}._private_workers)"
        ),
    }


def test_metrics__every_number_is_what_the_database_says(client, fleet):
    want = expected(fleet)
    # The fixture covers every case, so an always-zero scrape cannot pass.
    assert want["states"] == {"ready": 4, "scheduled": 2, "locked": 5, "failed": 2}
    assert (want["retrying"], want["locked_over_hour"], want["stale"]) == (2, 3, 1)
    assert (want["holders"], want["unregistered"], want["registered"]) == (5, 3, 3)

    got = scrape(client)

    assert by_label(got, "graphile_worker_jobs", "state") == want["states"]
    assert value(got, "graphile_worker_jobs_retrying") == want["retrying"]
    for kind in ("task", "queue"):
        series = {
            (dict(key)[kind], dict(key)["state"]): n
            for key, n in got[f"graphile_worker_{kind}_jobs"].items()
        }
        series |= {
            (dict(key)[kind], "retrying"): n
            for key, n in got[f"graphile_worker_{kind}_jobs_retrying"].items()
        }
        # The scrape lists zeros too; the SQL lists only the groups it found.
        assert {k: n for k, n in series.items() if n} == want[f"by_{kind}"]
    assert value(got, "graphile_worker_oldest_ready_job_age_seconds") == pytest.approx(
        want["oldest_ready_age"]
    )
    assert want["oldest_ready_age"] == 47 * 60
    assert value(got, "graphile_worker_jobs_locked_over_one_hour") == want["locked_over_hour"]
    assert value(got, "graphile_worker_oldest_job_lock_age_seconds") == pytest.approx(
        want["oldest_lock_age"]
    )
    assert value(got, "graphile_worker_registered_workers") == want["registered"]
    assert value(got, "graphile_worker_stale_registered_workers") == want["stale"]
    assert value(got, "graphile_worker_lock_holders") == want["holders"]
    assert value(got, "graphile_worker_unregistered_lock_holders") == want["unregistered"]
    assert value(got, "graphile_console_stale_worker_threshold_seconds") == 300
    assert value(got, "graphile_console_counts_estimated") == 0
    assert value(got, "graphile_console_counts_sample_ratio") == 1
    assert value(got, "graphile_console_scrape_success") == 1
    assert value(got, "graphile_console_scrape_duration_seconds") > 0
    migration = fleet.sql(f"SELECT max(id) FROM {fleet.q}.migrations")[0][0]
    assert got["graphile_worker_schema_info"] == {
        (
            ("flavour", "rust-recovery"),
            ("migration", str(migration)),
            ("schema", "graphile_worker"),
        ): 1
    }
    # No sweep has been recorded yet: the timestamp is left out rather than made up.
    assert "graphile_console_last_stale_worker_sweep_timestamp_seconds" not in got


def test_metrics__empty_queue_reads_zero(client, db):
    got = scrape(client)
    assert by_label(got, "graphile_worker_jobs", "state") == dict.fromkeys(
        ("ready", "scheduled", "locked", "failed"), 0
    )
    for name in (
        "graphile_worker_oldest_ready_job_age_seconds",
        "graphile_worker_jobs_locked_over_one_hour",
        "graphile_worker_oldest_job_lock_age_seconds",
        "graphile_worker_registered_workers",
        "graphile_worker_lock_holders",
    ):
        assert value(got, name) == 0, name
    assert got.get("graphile_worker_task_jobs", {}) == {}


def test_metrics__stale_threshold_setting(client, fleet, settings):
    settings.STALE_WORKER_THRESHOLD_SECONDS = 3
    got = scrape(client)
    # Heartbeats 10 s, 12 min and 4 min old: all three are older than 3 seconds.
    assert value(got, "graphile_worker_stale_registered_workers") == 3
    assert value(got, "graphile_console_stale_worker_threshold_seconds") == 3


def test_metrics__last_sweep_from_the_audit_log(client, fleet, settings):
    def sweep(outcome: str, schema: str = "graphile_worker", action: str = "sweep"):
        return audit.record(
            actor="ops", via="cli", action=action, outcome=outcome, worker_schema=schema
        )

    sweep("done")
    last_done = sweep("done")
    sweep("failed")  # later, but not a successful sweep
    sweep("rejected")
    sweep("done", schema="another_worker_schema")
    sweep("done", action="force_unlock")
    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT extract(epoch FROM max(created_at)) FROM "{table}" '
            "WHERE action = 'sweep' AND outcome = 'done' AND worker_schema = %s",
            [settings.GRAPHILE_WORKER_SCHEMA],
        )
        want = float(cursor.fetchone()[0])
    assert want == pytest.approx(last_done.created_at.timestamp())
    got = scrape(client)
    assert value(
        got, "graphile_console_last_stale_worker_sweep_timestamp_seconds"
    ) == pytest.approx(want)


def test_metrics__sweep_through_the_console_is_seen(login_as, fleet):
    """The action name the Maintenance page records is the one /metrics reads."""
    client = login_as("admin", "sweeper")
    form = {"threshold_minutes": "5", "delay_seconds": "0"}
    token = client.post("/maintenance/sweep/", form).context["p"].token
    assert client.post("/maintenance/sweep/", {"token": token, "reason": "x"}).status_code == 302
    entry = AuditEntry.objects.get(action="sweep")
    got = scrape(client)
    assert value(
        got, "graphile_console_last_stale_worker_sweep_timestamp_seconds"
    ) == pytest.approx(entry.created_at.timestamp())


def test_metrics__large_table_counts_are_the_overviews_estimates(
    client, console, jobs, monkeypatch
):
    """Past EXACT_ROW_LIMIT the scrape counts from the overview's sample, and says so; the
    oldest ready job and the lock facts stay exact. The limits are lowered to keep the table
    small."""
    monkeypatch.setattr(stats, "EXACT_ROW_LIMIT", 50)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", 40)
    monkeypatch.setattr(stats, "SAMPLE_WINDOWS", 10)
    jobs.utils.add_raw_jobs([RawJobSpec("bulk_task", {"n": n}) for n in range(400)])
    old = jobs.locked(by="graphile_worker_zz", age="90 minutes")
    jobs.sql(f"ANALYZE {jobs.q}._private_jobs")
    overview = console.get("/").context["stats"]
    assert not overview.exact

    got = scrape(client)

    assert value(got, "graphile_console_counts_estimated") == 1
    assert value(got, "graphile_console_counts_sample_ratio") == pytest.approx(
        overview.sampled_fraction
    )
    assert 0 < overview.sampled_fraction < 1
    # The states are the overview's estimates, except locked: the lock pass counts it exactly
    # (a sample of id blocks can miss every locked job).
    exact_locked = jobs.sql(f"SELECT count(*) FROM {jobs.q}._private_jobs WHERE {LOCKED}")[0][0]
    assert exact_locked == 1
    assert by_label(got, "graphile_worker_jobs", "state") == {
        state: exact_locked if state == "locked" else getattr(overview.counts, state)
        for state in STATES
    }
    # Each estimate's 95 % interval is there too; locked, counted exactly, has low = high.
    lows = by_label(got, "graphile_worker_jobs_interval", "state", bound="low")
    highs = by_label(got, "graphile_worker_jobs_interval", "state", bound="high")
    assert lows["locked"] == highs["locked"] == 1
    assert lows["total"] <= 401 <= highs.get("total", float("inf"))
    assert set(lows) == {*STATES, "retrying", "total"}
    exact_age = jobs.sql(
        f"SELECT extract(epoch FROM now() - min(run_at)) FROM {jobs.q}._private_jobs WHERE {READY}"
    )[0][0]
    assert value(got, "graphile_worker_oldest_ready_job_age_seconds") == pytest.approx(
        float(exact_age)
    )
    assert value(got, "graphile_worker_jobs_locked_over_one_hour") == 1
    assert value(got, "graphile_worker_oldest_job_lock_age_seconds") == 90 * 60
    assert old.locked_by == "graphile_worker_zz"


def test_metrics__queues_past_the_limit_are_summed(client, jobs, monkeypatch):
    monkeypatch.setattr(metrics, "MAX_LABELLED_GROUPS", 2)
    for queue, n in (("big", 3), ("middle", 2), ("small_a", 1), ("small_b", 1)):
        for _ in range(n):
            jobs.ready("send_email", queue_name=queue)
    got = scrape(client)
    assert by_label(got, "graphile_worker_queue_jobs", "queue", state="ready") == {
        "big": 3,
        "middle": 2,
        "__other__": 2,
    }
    assert sum(by_label(got, "graphile_worker_queue_jobs_retrying", "queue").values()) == 0


def test_metrics__unusable_schema_leaves_the_queue_out(client, db, settings):
    settings.GRAPHILE_WORKER_SCHEMA = "no_such_worker_schema"
    got = scrape(client)
    assert value(got, "graphile_console_scrape_success") == 0
    assert not [name for name in got if name.startswith("graphile_worker_jobs")]
    assert by_label(got, "graphile_worker_schema_info", "flavour") == {"absent": 1}


def test_metrics__node_schema_has_no_registered_workers(client, db, settings, jobs):
    from worker_admin.utils import WorkerUtils

    WorkerUtils(schema="gw_metrics_node").migrate(recovery=False)
    settings.GRAPHILE_WORKER_SCHEMA = "gw_metrics_node"
    got = scrape(client)
    assert value(got, "graphile_console_scrape_success") == 1
    assert "graphile_worker_registered_workers" not in got
    assert "graphile_worker_stale_registered_workers" not in got


@pytest.mark.embedded
def test_metrics__unreachable_database_is_reported_not_raised():
    [answer] = console_process(
        [("get", "/metrics")], f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere"
    )
    assert answer["status"] == 200
    got = parse(answer["body"])
    assert value(got, "graphile_console_scrape_success") == 0
    assert not [name for name in got if name.startswith("graphile_worker_")]


# -- access ----------------------------------------------------------------------------------

OUTSIDE = "203.0.113.7"


def refused(response, reason: str) -> bool:
    body = response.content.decode()
    return (
        response.status_code == 403
        and response["Content-Type"] == "text/plain; charset=utf-8"
        and body == reason + "\n"
        and "graphile_worker" not in body
    )


def test_access__token(client, db, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    right = {"Authorization": "Bearer s3cret-metrics-token"}
    wrong = {"Authorization": "Bearer s3cret-metrics-tokem"}
    assert client.get("/metrics", headers=right, REMOTE_ADDR=OUTSIDE).status_code == 200
    assert (
        client.get(
            "/metrics",
            headers={"Authorization": "bearer s3cret-metrics-token"},
            REMOTE_ADDR=OUTSIDE,
        ).status_code
        == 200
    )
    assert refused(
        client.get("/metrics", headers=wrong, REMOTE_ADDR=OUTSIDE),
        "The bearer token is not the metrics token.",
    )
    # A wrong token is refused even from an allowed network: a stale scraper gets noticed.
    assert refused(
        client.get("/metrics", headers=wrong), "The bearer token is not the metrics token."
    )
    missing = "Metrics need the metrics bearer token, or a request from an allowed network."
    assert refused(client.get("/metrics", REMOTE_ADDR=OUTSIDE), missing)
    assert refused(
        client.get("/metrics", headers={"Authorization": "Basic czNjcmV0"}, REMOTE_ADDR=OUTSIDE),
        missing,
    )
    assert client.get("/metrics").status_code == 200  # no token, from loopback


def test_access__networks(client, db, settings):
    only_networks = "Metrics are served only to the networks in METRICS_ALLOWED_NETWORKS."
    assert settings.METRICS_TOKEN == ""
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert refused(client.get("/metrics", REMOTE_ADDR=OUTSIDE), only_networks)
    # Without a configured token a presented one proves nothing.
    assert refused(
        client.get("/metrics", headers={"Authorization": "Bearer "}, REMOTE_ADDR=OUTSIDE),
        only_networks,
    )
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "2001:db8::/32", "not-a-network"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.1.1.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::5").status_code == 200
    assert refused(client.get("/metrics", REMOTE_ADDR="127.0.0.1"), only_networks)
    assert refused(client.get("/metrics", REMOTE_ADDR="11.0.0.1"), only_networks)
    assert refused(client.get("/metrics", REMOTE_ADDR="garbage"), only_networks)


def test_access__no_login_no_cache_no_writes(client, db):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert client.head("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405


# -- the console's own timings ----------------------------------------------------------------


def _count(samples: Samples, name: str, **labels) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0)


def test_timings__queries_and_requests_by_url_name(client, login_as, fleet):
    viewer = login_as("viewer", "watcher")
    job_id = fleet.sql(f"SELECT min(id) FROM {fleet.q}._private_jobs")[0][0]
    before = scrape(client)
    with CaptureQueriesContext(connection) as queries:
        assert viewer.get("/jobs/").status_code == 200
        assert viewer.get(f"/jobs/{job_id}/").status_code == 200
        assert viewer.get("/jobs/999999999/").status_code == 404
    captured = len(queries)  # now: the next request clears the connection's query log
    assert viewer.get("/no/such/page/").status_code == 404
    after = scrape(client)

    def delta(name: str, **labels) -> float:
        return _count(after, name, **labels) - _count(before, name, **labels)

    requests = "graphile_console_request_duration_seconds_count"
    assert delta(requests, view="worker_admin:jobs", status="2xx") == 1
    assert delta(requests, view="worker_admin:job_detail", status="2xx") == 1
    assert delta(requests, view="worker_admin:job_detail", status="4xx") == 1
    assert delta(requests, view="unmatched", status="4xx") == 1
    # The scrape before counts itself once the response is built, so `after` includes it.
    assert delta(requests, view="metrics", status="2xx") == 1
    query_count = "graphile_console_query_duration_seconds_count"
    assert (
        delta(query_count, view="worker_admin:jobs")
        + delta(query_count, view="worker_admin:job_detail")
        == captured
    )
    assert delta(query_count, view="worker_admin:jobs") > 0
    assert delta("graphile_console_query_duration_seconds_sum", view="worker_admin:jobs") > 0
    # Labels are URL names, never raw paths: no job id, no unknown path.
    views = {dict(key)["view"] for key in after["graphile_console_request_duration_seconds_count"]}
    # (A URL name may hold digits, as admin:jsi18n does, when another test in this process
    # asked for that page first; a number on its own would be an id.)
    assert not [v for v in views if re.search(r"/|\b\d+\b", v)]


@pytest.mark.embedded
def test_timings__every_process_counts_in_multiprocess_mode(db, client, tmp_path, monkeypatch):
    """Two console processes write their samples to PROMETHEUS_MULTIPROC_DIR; a scrape answered
    by a third (this one) sums them and leaves out its own in-process histograms."""
    url = server_conninfo()
    for n in (2, 3):
        answers = console_process(
            [("get", "/healthz")] * n, url, PROMETHEUS_MULTIPROC_DIR=str(tmp_path)
        )
        assert [a["status"] for a in answers] == [200] * n
    assert len(list(tmp_path.glob("histogram_*.db"))) == 2
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    got = scrape(client)
    requests = "graphile_console_request_duration_seconds_count"
    assert _count(got, requests, view="healthz", status="2xx") == 5
    assert _count(got, requests, view="metrics", status="2xx") == 0  # this process: in memory
    assert _count(got, "graphile_console_query_duration_seconds_count", view="healthz") >= 5
    assert value(got, "graphile_console_scrape_success") == 1


def test_access__behind_a_trusted_proxy_the_forwarded_address_decides(client, db, settings):
    """A reverse proxy on the same host connects from 127.0.0.1; the client is the address it
    appended to X-Forwarded-For, and only that is checked against the allowed networks."""
    settings.TRUSTED_PROXY_COUNT = 1
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.1/32", "10.0.0.0/8"]
    only_networks = "Metrics are served only to the networks in METRICS_ALLOWED_NETWORKS."
    proxy = {"REMOTE_ADDR": "127.0.0.1"}
    assert refused(client.get("/metrics", HTTP_X_FORWARDED_FOR=OUTSIDE, **proxy), only_networks)
    assert client.get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3", **proxy).status_code == 200
    # The client forges an allowed first entry; the proxy appends the real one.
    forged = f"10.1.2.3, {OUTSIDE}"
    assert refused(client.get("/metrics", HTTP_X_FORWARDED_FOR=forged, **proxy), only_networks)
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    token = {"Authorization": "Bearer s3cret-metrics-token"}
    response = client.get("/metrics", headers=token, HTTP_X_FORWARDED_FOR=OUTSIDE, **proxy)
    assert response.status_code == 200


def test_access__forwarded_for_without_a_trusted_proxy_is_refused(client, db, settings):
    """No proxy trusted: a request carrying X-Forwarded-For came through one anyway (a proxy on
    the same host looks like loopback), so it is refused, with the reason."""
    assert settings.TRUSTED_PROXY_COUNT == 0
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1", REMOTE_ADDR="127.0.0.1")
    assert refused(
        response,
        "Metrics refused this request: it came through a proxy (it carries X-Forwarded-For) "
        "while TRUSTED_PROXY_COUNT is 0, so the console cannot tell the client's address. "
        "Set TRUSTED_PROXY_COUNT to the number of proxies, or send the metrics token.",
    )
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200  # no proxy: fine
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    token = {"Authorization": "Bearer s3cret-metrics-token"}
    assert client.get("/metrics", headers=token, HTTP_X_FORWARDED_FOR=OUTSIDE).status_code == 200


def test_access__fewer_forwarded_entries_than_trusted_proxies_is_refused(client, db, settings):
    settings.TRUSTED_PROXY_COUNT = 2
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 403
    assert "1 X-Forwarded-For entry while TRUSTED_PROXY_COUNT is 2" in response.content.decode()
    # Past the proxies, or through one that does not append the header: refused too.
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 403
    assert "0 X-Forwarded-For entries while TRUSTED_PROXY_COUNT is 2" in response.content.decode()


def test_access__a_request_past_the_trusted_proxy_is_logged(client, db, settings, caplog):
    settings.TRUSTED_PROXY_COUNT = 1
    with caplog.at_level("WARNING", logger="worker_admin.client_address"):
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    [record] = [r for r in caplog.records if r.name == "worker_admin.client_address"]
    assert "TRUSTED_PROXY_COUNT is 1 but a request from 127.0.0.1 carries no X-Forwarded-For" in (
        record.getMessage()
    )


def test_metrics__stale_at_exactly_the_threshold(client, jobs):
    """Inclusive, like list_active_workers and the workers page: a heartbeat exactly 300 s old
    is stale, a microsecond younger is not (the test's transaction fixes now())."""
    register(jobs, "graphile_worker_exact", "5 minutes")
    register(jobs, "graphile_worker_under", "4 minutes 59.999999 seconds")

    got = scrape(client)

    assert value(got, "graphile_worker_stale_registered_workers") == 1
