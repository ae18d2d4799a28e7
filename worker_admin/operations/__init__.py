"""One operation per kind of write, between the faces (pages, JSON API, command line) and
WorkerUtils (docs: ARCHITECTURE.md, "One operation per write").

Each operation offers `preview(actor, what) -> Preview` (the exact targets pinned, before ->
after of every column it changes, warnings, a confirmation token) and `apply(actor,
confirmation) -> Result` (acts once, in chunks where large, the audit entry in the same
transaction as each part); a refusal is `errors.Refused` with one sentence. Faces only turn
their input into the operation's input and render what comes back.

- `job_actions`: run now, retry, reschedule, complete, permanently fail, remove by key.
- `add_jobs`: one job, a batch.
- `cleanup`: permanently failed jobs, unused task identifiers and queues, on pinned targets.
- `sweep` (with `sweep_finding`): the stale-worker sweep on the jobs and workers its dry run
  pinned; `force_unlock`: the locks of chosen worker ids; both release through `releasing`.
- `undo`: an audited action put back from its before-image, skipping jobs changed since.
- `claims`: the stored, pinned preview that is consumed once, in the database.
- `job_specs`: the checks on a job to add, shared by every face.

This module stays free of imports: `worker_admin.models` imports `claims` to register its model.
"""
