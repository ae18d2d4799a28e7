-- The worker-recovery extension of the Rust port of Graphile Worker (graphile_worker crate):
-- workers register and heartbeat, and a sweeper recovers the jobs of workers that stopped
-- heartbeating. Written for this project from GRAPHILE_WORKER.md, section 5.
--
-- Idempotent on purpose: besides running right after core.sql, it is applied on its own to a
-- schema that graphile-worker 0.18 migrated (the Rust runner never adds these objects there: it
-- only applies migration ids above the highest one recorded, and Node's 20 is recorded). On a
-- 0.16/0.17 schema (highest id 18 or 19) the installer refuses to apply it, because the Rust
-- runner would later run its own migration 20 and fail on these objects (docs/schema.md). The
-- installer replaces the schema placeholder with a double-quoted identifier.

-- Registered workers. No row-level security: the console and the sweepers read it as any role.
create table if not exists {{schema}}._private_workers (
  id text primary key,
  last_heartbeat_at timestamptz not null,
  started_at timestamptz not null default now(),
  metadata jsonb
);

-- Staleness is always asked as "heartbeat older than X".
create index if not exists _private_workers_last_heartbeat_at_idx
  on {{schema}}._private_workers (last_heartbeat_at);

-- worker_heartbeat: register the worker or refresh its heartbeat. A null metadata keeps what the
-- worker reported earlier (Rust sends {"pid": N} only when it registers).
create or replace function {{schema}}.worker_heartbeat(worker_id text, metadata json default null)
returns void
language sql
as $body$
  insert into {{schema}}._private_workers as w (id, last_heartbeat_at, metadata)
    values (worker_heartbeat.worker_id, now(), worker_heartbeat.metadata::jsonb)
    on conflict (id) do update set
      last_heartbeat_at = excluded.last_heartbeat_at,
      metadata = coalesce(excluded.metadata, w.metadata);
$body$;

-- worker_deregister: a clean shutdown removes the worker's row.
create or replace function {{schema}}.worker_deregister(worker_id text)
returns void
language sql
as $body$
  delete from {{schema}}._private_workers as w
    where w.id = worker_deregister.worker_id;
$body$;

-- list_stale_workers: registered workers whose last heartbeat is older than the threshold.
create or replace function {{schema}}.list_stale_workers(stale_threshold interval)
returns table (worker_id text)
language sql
as $body$
  select w.id
    from {{schema}}._private_workers as w
    where w.last_heartbeat_at < now() - list_stale_workers.stale_threshold
    order by w.id;
$body$;

-- list_orphan_locked_workers: lock holders (on jobs or queues) whose lock is older than the
-- threshold and that never registered, e.g. a worker that died before its first heartbeat. Note
-- that Node workers never register, so their long-held locks show up here too.
create or replace function {{schema}}.list_orphan_locked_workers(stale_threshold interval)
returns table (worker_id text)
language sql
as $body$
  select distinct holder.locked_by
    from (
      select j.locked_by, j.locked_at
        from {{schema}}._private_jobs as j
        where j.locked_by is not null
      union all
      select q.locked_by, q.locked_at
        from {{schema}}._private_job_queues as q
        where q.locked_by is not null
    ) as holder
    where holder.locked_at < now() - list_orphan_locked_workers.stale_threshold
      and not exists (
        select 1 from {{schema}}._private_workers as w where w.id = holder.locked_by
      )
    order by holder.locked_by;
$body$;

-- recover_dead_worker_jobs: make the jobs of dead workers runnable again and return how many.
-- The interrupted attempt is given back (attempts - 1, never below 0) because the job did not
-- fail, and run_at moves at least recovery_delay into the future so a flapping worker does not
-- pick it up at once. Their queues are unlocked as well.
create or replace function {{schema}}.recover_dead_worker_jobs(
  worker_ids text[],
  recovery_delay interval default interval '0'
) returns integer
language plpgsql
as $body$
#variable_conflict use_column
declare
  v_count integer;
begin
  update {{schema}}._private_jobs as j
    set locked_at = null,
        locked_by = null,
        attempts = greatest(0, j.attempts - 1),
        run_at = greatest(j.run_at, now() + recover_dead_worker_jobs.recovery_delay),
        last_error = 'Job recovered after worker interruption',
        updated_at = now()
    where j.locked_by = any (recover_dead_worker_jobs.worker_ids);
  get diagnostics v_count = row_count;

  update {{schema}}._private_job_queues as q
    set locked_at = null,
        locked_by = null
    where q.locked_by = any (recover_dead_worker_jobs.worker_ids);

  return v_count;
end;
$body$;

-- delete_stale_workers: forget workers once their jobs were recovered.
create or replace function {{schema}}.delete_stale_workers(worker_ids text[])
returns void
language sql
as $body$
  delete from {{schema}}._private_workers as w
    where w.id = any (delete_stale_workers.worker_ids);
$body$;
