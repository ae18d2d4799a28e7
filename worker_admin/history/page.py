"""What the chart templates need, built once for the overview, the /history/ page and the
charts fragment (so no face imports another)."""

from __future__ import annotations

from django.conf import settings

from worker_admin.history import series
from worker_admin.history.charts import overview_charts
from worker_admin.history.models import HistorySnapshot, history_key


def charts_context(range_key: str | None) -> dict:
    history = series.read(range_=series.parse_range(range_key))
    return {
        "history": history,
        "charts": overview_charts(history),
        "ranges": list(series.RANGES.values()),
        "history_refresh": max(settings.POLL_INTERVAL_SECONDS, settings.HISTORY_INTERVAL_SECONDS),
        "history_interval": settings.HISTORY_INTERVAL_SECONDS,
        "history_on_request": settings.HISTORY_RECORD_ON_REQUEST,
    }


def recent_snapshots(limit: int = 30) -> list[HistorySnapshot]:
    return list(HistorySnapshot.objects.filter(schema=history_key()).order_by("-taken_at")[:limit])
