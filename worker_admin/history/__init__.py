"""History: what the queue looked like over time, recorded by the console itself.

Graphile Worker deletes a job when it completes, so the queue holds no past; the console keeps
one. Every HISTORY_INTERVAL_SECONDS a snapshot (models.HistorySnapshot, in the console's own
schema) records the jobs added, deleted (completed) and updated since the one before, read from
the statistics PostgreSQL keeps for `_private_jobs` (recorder.py), and less often the counts per
state, task and queue. retention.py folds old snapshots into coarser ones; series.py and
charts.py turn them into the overview's charts.
"""
