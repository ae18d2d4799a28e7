"""Server-rendered SVG charts: geometry computed here, markup in templates/worker_admin/history/.

No script: the page's Content-Security-Policy forbids inline script, and a line chart needs
none. A series is a list of values, None where nothing was recorded; each unbroken run of
values becomes its own path, so a gap in recording is a gap in the line, never a drop to zero.
A lone value between two gaps is drawn as a dot. Colours come from the stylesheet's variables
(history.css), so the dark theme follows the rest of the console.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from django.utils.timezone import localtime

from worker_admin.history.series import STATES, History

WIDTH, HEIGHT = 640, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 12, 30  # room for the axis labels


@dataclass(frozen=True)
class Line:
    key: str  # css class suffix: series-<key>
    label: str
    values: list[float | None]
    paths: list[str] = field(default_factory=list)
    dots: list[tuple[float, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    unit: str
    times: list[datetime]
    lines: list[Line]
    top: float  # the value at the top of the plot
    ticks: list[tuple[float, str]]  # (y, label)
    x_labels: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return all(v is None for line in self.lines for v in line.values)

    @property
    def rows(self) -> list[tuple[datetime, list]]:
        """The table behind the chart: one row per bucket, one cell per line."""
        return [(t, [line.values[i] for line in self.lines]) for i, t in enumerate(self.times)]

    @property
    def plot(self) -> dict:
        return {
            "left": LEFT,
            "right": self.width - RIGHT,
            "top": TOP,
            "bottom": self.height - BOTTOM,
        }


def nice_top(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^n at or above `value` (1 for an all-zero chart)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _x(i: int, n: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span * i / (n - 1) if n > 1 else span / 2)


def _y(value: float, top: float) -> float:
    return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * min(value, top) / top


def _trace(key: str, label: str, values: list[float | None], top: float) -> Line:
    paths, dots, run = [], [], []
    for i, value in enumerate([*values, None]):
        if value is not None:
            run.append((round(_x(i, len(values)), 1), round(_y(value, top), 1)))
            continue
        if len(run) == 1:
            dots.append(run[0])
        elif run:
            paths.append("M" + " L".join(f"{x},{y}" for x, y in run))
        run = []
    return Line(key, label, values, paths, dots)


def _label_number(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _x_labels(times: list[datetime], long: bool) -> list[tuple[float, str]]:
    if not times:
        return []
    picks = sorted({0, len(times) // 2, len(times) - 1})
    fmt = "%m-%d %H:%M" if long else "%H:%M"
    # In the console's TIME_ZONE, like every other time it shows.
    return [(round(_x(i, len(times)), 1), localtime(times[i]).strftime(fmt)) for i in picks]


def chart(
    id: str, title: str, unit: str, times: list, series: list[tuple[str, str, list]], long: bool
) -> Chart:
    known = [v for _, _, values in series for v in values if v is not None]
    top = nice_top(max(known, default=0.0))
    ticks = [(round(_y(top * f, top), 1), _label_number(top * f)) for f in (0, 0.5, 1)]
    lines = [_trace(key, label, values, top) for key, label, values in series]
    return Chart(id, title, unit, times, lines, top, ticks, _x_labels(times, long))


def overview_charts(history: History) -> list[Chart]:
    """Throughput, backlog by state and the oldest-ready wait, for one range."""
    buckets = history.buckets
    times = [b.start for b in buckets]
    long = history.range.span.days >= 1
    wait_minutes = [
        None if b.oldest_ready_seconds is None else b.oldest_ready_seconds / 60 for b in buckets
    ]
    return [
        chart(
            "throughput",
            "Throughput",
            "jobs per minute",
            times,
            [
                ("added", "Added", [b.added for b in buckets]),
                ("completed", "Completed", [b.completed for b in buckets]),
                ("failed", "Failed", [b.failed for b in buckets]),
            ],
            long,
        ),
        chart(
            "backlog",
            "Backlog by state",
            "jobs",
            times,
            [
                (state, state.capitalize(), [b.counts and b.counts.get(state) for b in buckets])
                for state in STATES
            ],
            long,
        ),
        chart(
            "wait",
            "Oldest ready job's wait",
            "minutes",
            times,
            [("wait", "Wait", wait_minutes)],
            long,
        ),
    ]


def group_charts(history) -> list[Chart]:
    """One task's or queue's backlog by state and oldest-ready wait (entity_series.GroupHistory):
    the overview's charts but throughput, which PostgreSQL's statistics only keep per table."""
    buckets = history.buckets
    times = [b.start for b in buckets]
    long = history.range.span.days >= 1
    return [
        chart(
            "backlog",
            "Backlog by state",
            "jobs",
            times,
            [
                (state, state.capitalize(), [b.counts and b.counts.get(state) for b in buckets])
                for state in STATES
            ],
            long,
        ),
        chart(
            "wait",
            "Oldest ready job's wait",
            "minutes",
            times,
            [("wait", "Wait", [None if b.wait is None else b.wait / 60 for b in buckets])],
            long,
        ),
    ]


def heartbeat_chart(history, threshold_seconds: float) -> Chart:
    """A worker's heartbeat age (entity_series.HeartbeatHistory) against the stale threshold."""
    known = [i for i, age in enumerate(history.ages) if age is not None]
    threshold = [threshold_seconds if i in known else None for i in range(len(history.ages))]
    return chart(
        "heartbeat",
        "Heartbeat age",
        "seconds since the last heartbeat",
        history.times,
        [("heartbeat", "Heartbeat age", history.ages), ("threshold", "Stale after", threshold)],
        history.range.span.days >= 1,
    )


@dataclass(frozen=True)
class Sparkline:
    paths: list[str]
    dots: list[tuple[float, float]]
    last: float | None
    values: list[float | None]
    width: int = 80
    height: int = 18


def sparkline(values: list[float | None]) -> Sparkline:
    """A tiny line of a task's or queue's job count; gaps stay gaps."""
    width, height, pad = 80, 18, 2
    # From zero to the line's own highest value: a sparkline shows a shape, not a scale.
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    n = len(values)
    paths, dots, run = [], [], []
    for i, value in enumerate([*values, None]):
        if value is not None:
            x = pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)
            y = height - pad - (height - 2 * pad) * min(value, top) / top
            run.append((round(x, 1), round(y, 1)))
            continue
        if len(run) == 1:
            dots.append(run[0])
        elif run:
            paths.append("M" + " L".join(f"{x},{y}" for x, y in run))
        run = []
    last = next((v for v in reversed(values) if v is not None), None)
    return Sparkline(paths, dots, last, values)
