"""The sampled counts' 95 % intervals hold the true counts, on datasets built to defeat a sample.

Each dataset is written straight into the worker schema with generate_series: tasks, queues,
states and run_at follow periodic patterns (periods from 2 to beyond the table's size, which
makes them contiguous bursts), ids have a stride and a hole, and one burst of locked jobs sits
somewhere. The exact-count threshold is lowered so these tables (up to ~50k rows) take the
sampling path. Over many draws per dataset, the true count must lie inside the stated interval
at about the stated rate, and no state, task or queue that holds a real share of the jobs may
be missed by most draws (the old evenly spaced windows missed whole ones on every refresh).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from django.conf import settings
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from worker_admin import estimates, stats
from worker_admin.models import Job

pytestmark = pytest.mark.django_db

DRAWS = 30  # samples per dataset
MIN_COVERAGE = 0.90  # intervals of a dataset holding the truth (95 % stated, some slack)
MIN_SAMPLED_COVERAGE = 0.80
NAMES = ("total", "ready", "scheduled", "locked", "failed", "retrying")
PERIOD_UNITS = (1, 2, 3, 10, 97, 100, 1_000, 5_000, 25_000)


@dataclass(frozen=True)
class Shape:
    rows: int
    id_step: int
    hole_at: int
    hole_len: int
    task: tuple[int, int]  # (run length, number of tasks): task period = product
    queue: tuple[int, int]
    state: tuple[int, int]
    run_at: tuple[int, int]
    burst_at: int
    burst_len: int


def _pattern():
    return st.tuples(st.sampled_from(PERIOD_UNITS), st.integers(2, 7))


shapes = st.builds(
    Shape,
    rows=st.integers(5_000, 50_000),
    id_step=st.sampled_from((1, 1, 2, 3)),
    hole_at=st.integers(0, 40_000),
    hole_len=st.sampled_from((0, 1, 500, 20_000)),
    task=_pattern(),
    queue=_pattern(),
    state=_pattern(),
    run_at=_pattern(),
    burst_at=st.integers(0, 45_000),
    burst_len=st.sampled_from((0, 50, 2_000)),
)


def _sql(sql: str, params=()) -> None:
    from django.db import connections

    with connections[settings.WORKER_DATABASE].cursor() as cursor:
        cursor.execute(sql, params)


def _build(shape: Shape) -> None:
    s = settings.GRAPHILE_WORKER_SCHEMA
    _sql(f"TRUNCATE {s}._private_jobs, {s}._private_tasks, {s}._private_job_queues")
    _sql(
        f"INSERT INTO {s}._private_tasks (identifier) "
        f"SELECT 'task_' || g FROM generate_series(0, %s) g",
        [shape.task[1] - 1],
    )
    _sql(
        f"INSERT INTO {s}._private_job_queues (queue_name) "
        f"SELECT 'queue_' || g FROM generate_series(0, %s) g",
        [shape.queue[1] - 1],
    )
    # Class 0 of the state pattern: locked; 1 failed; 2 retrying; others available, ready or
    # scheduled by the run_at pattern. Queue class 0 means no queue. The burst is locked.
    _sql(
        f"""
        WITH g AS (
            SELECT i, i * %(step)s + CASE WHEN i >= %(hole_at)s THEN %(hole_len)s ELSE 0 END AS id,
                   (i / %(sd)s) %% %(sm)s AS c,
                   i BETWEEN %(burst_at)s AND %(burst_at)s + %(burst_len)s - 1 AS burst
            FROM generate_series(1, %(rows)s) i
        )
        INSERT INTO {s}._private_jobs
            (id, task_id, job_queue_id, run_at, attempts, max_attempts, locked_at, locked_by)
        OVERRIDING SYSTEM VALUE
        SELECT g.id,
               (SELECT min(id) FROM {s}._private_tasks) + (i / %(td)s) %% %(tm)s,
               NULLIF((i / %(qd)s) %% %(qm)s, 0)
                 + (SELECT min(id) - 1 FROM {s}._private_job_queues),
               now() + CASE WHEN (i / %(rd)s) %% %(rm)s = 0 THEN interval '1 hour'
                            ELSE interval '-1 hour' END,
               CASE WHEN c = 1 THEN 3 WHEN c = 2 THEN 1 ELSE 0 END,
               3,
               CASE WHEN c = 0 OR burst THEN now() END,
               CASE WHEN c = 0 OR burst THEN 'worker_' || (i %% 5) END
        FROM g
        """,
        {
            "step": shape.id_step,
            "hole_at": shape.hole_at,
            "hole_len": shape.hole_len,
            "sd": shape.state[0],
            "sm": shape.state[1],
            "td": shape.task[0],
            "tm": shape.task[1],
            "qd": shape.queue[0],
            "qm": shape.queue[1],
            "rd": shape.run_at[0],
            "rm": shape.run_at[1],
            "rows": shape.rows,
            "burst_at": shape.burst_at,
            "burst_len": shape.burst_len,
        },
    )
    _sql(f"ANALYZE {s}._private_jobs")


def _truth(alias: str) -> dict[tuple[str, str], int]:
    exact = stats._exact_queue_stats(Job.objects.using(alias), alias)
    truth = {("all", name): exact.counts.estimate(name).value for name in NAMES}
    for dim, groups in (("task", exact.by_task), ("queue", exact.by_queue)):
        for group in groups:
            for name in NAMES:
                truth[(f"{dim}:{group.name}", name)] = group.counts.estimate(name).value
    return truth


def _shown(result: stats.QueueStats) -> dict[tuple[str, str], estimates.Estimate]:
    shown = {("all", name): result.counts.estimate(name) for name in NAMES}
    for dim, groups in (("task", result.by_task), ("queue", result.by_queue)):
        for group in groups:
            for name in NAMES:
                shown[(f"{dim}:{group.name}", name)] = group.counts.estimate(name)
    return shown


@pytest.fixture
def sampling(monkeypatch):
    """The sampling path on small tables, a fresh sample on every call, reproducible draws."""
    monkeypatch.setattr(stats, "EXACT_ROW_LIMIT", 1_000)
    monkeypatch.setattr(stats, "SAMPLE_WINDOWS", 60)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", 60 * 25)
    monkeypatch.setattr(stats, "SAMPLE_REUSE_SECONDS", -1)
    monkeypatch.setattr(estimates, "RNG", random.Random(15))
    return {}  # coverage pooled over the examples of one test


@hsettings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a dataset costs a second or two
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=shapes)
def test_intervals_hold_the_true_counts(sampling, shape):
    alias = settings.WORKER_DATABASE
    _build(shape)
    truth = _truth(alias)
    assert truth[("all", "total")] == shape.rows
    seen: dict[tuple[str, str], int] = dict.fromkeys(truth, 0)
    tally = {"intervals": 0, "covered": 0, "sampled": 0, "sampled_covered": 0}
    for _ in range(DRAWS):
        result = stats.queue_stats(alias)
        assert not result.exact
        shown = _shown(result)
        # Every task and queue is listed, seen or not (those without jobs count 0).
        assert len(result.by_task) == shape.task[1] and len(result.by_queue) == shape.queue[1]
        truth = dict.fromkeys(shown, 0) | truth
        seen = dict.fromkeys(shown, 0) | seen
        for item, value in shown.items():
            seen[item] += value.method != "unseen"
            _tally(tally, value, truth[item])
    _assert_coverage(tally, shape, sampling)
    # Systematic misses: an item with a tenth of the jobs is seen by most draws.
    for item, true in truth.items():
        if true >= shape.rows / 10:
            assert seen[item] >= DRAWS / 2, (item, true, seen[item], shape)


@hsettings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a dataset costs a second or two
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=shapes)
def test_filtered_intervals_hold_the_true_counts(sampling, shape):
    """A filtered tab's estimate (the sample narrowed to one task's rows) covers too."""
    alias = settings.WORKER_DATABASE
    _build(shape)
    jobs = Job.objects.using(alias)
    task_id = jobs.order_by("id").values_list("task_id", flat=True).first()
    narrowed = jobs.filter(task_id=task_id)
    truth = stats._exact_queue_stats(narrowed, alias).counts
    tally = {"intervals": 0, "covered": 0, "sampled": 0, "sampled_covered": 0}
    for _ in range(DRAWS):
        counts = stats.sampled_state_counts(alias, narrowed)
        for name in NAMES:
            _tally(tally, counts.estimate(name), truth.estimate(name).value)
    _assert_coverage(tally, shape, sampling)


def _tally(tally: dict, value: estimates.Estimate, true: int) -> None:
    """Counts the intervals that say something (a true count above 0: an empty item is
    trivially inside [0, N]) and those holding the truth; the "± %" ones separately."""
    if true == 0:
        return
    inside = value.low <= true <= (true if value.high is None else value.high)
    tally["intervals"] += 1
    tally["covered"] += inside
    if value.method == "sampled":
        tally["sampled"] += 1
        tally["sampled_covered"] += inside


def _assert_coverage(tally: dict, shape: Shape, pooled: dict) -> None:
    """At least MIN_COVERAGE of a dataset's intervals hold the truth. The "± %" intervals
    alone are fewer and correlated within a draw (one sample serves every item), so a dataset
    of them may fall a little short by chance: they must reach MIN_SAMPLED_COVERAGE per
    dataset, and MIN_COVERAGE pooled over the datasets seen so far."""
    assert tally["covered"] >= MIN_COVERAGE * tally["intervals"], (tally, shape)
    if tally["sampled"] >= 100:
        assert tally["sampled_covered"] >= MIN_SAMPLED_COVERAGE * tally["sampled"], (tally, shape)
    for key in tally:
        pooled[key] = pooled.get(key, 0) + tally[key]
    if pooled["sampled"] >= 500:
        assert pooled["sampled_covered"] >= MIN_COVERAGE * pooled["sampled"], (pooled, shape)


def test_displays_say_what_is_known():
    exact = estimates.Estimate.exact_count(1_234)
    assert exact.display == "1,234" and exact.as_dict()["exact"] is True
    sampled = estimates.Estimate(3_700_000, 3_552_000, 3_848_000, "sampled")
    assert sampled.display == "~3.7M ± 4 %"
    assert "3,552,000 to 3,848,000" in sampled.explanation
    assert estimates.Estimate(0, 0, 149_999, "unseen").display == "fewer than 150k"
    assert estimates.Estimate(20_000, 1_001, None, "at_least").display == "more than 1,000"
    assert estimates.bounded(812, 1_000) == estimates.Estimate.exact_count(812)
    ranged = estimates.Estimate(5_000, 12, 40_000, "range")
    assert ranged.display == "between 12 and 40k" and "~" not in ranged.display


def test_estimator_is_unbiased_on_a_periodic_pattern():
    """Pure arithmetic: blocks whose counts repeat with a period; the mean of many estimates
    is the true total although each block start shares the period's phase."""
    rng = random.Random(7)
    width, blocks = 10, 1_000
    counts = [width if b % 7 == 0 else 0 for b in range(blocks)]  # a state in 1 block of 7
    design = estimates.Design(blocks=blocks, sampled=50, width=width)
    values = []
    for _ in range(2_000):
        picked = [counts[b] for b in rng.sample(range(blocks), 50)]
        sums = estimates.Sums(sum(picked), sum(c * c for c in picked), sum(c > 0 for c in picked))
        values.append(estimates.estimate(sums, design).value)
    assert abs(sum(values) / len(values) - sum(counts)) < 0.03 * sum(counts)
