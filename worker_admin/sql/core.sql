-- Graphile Worker core schema, in the shape graphile-worker 0.18.0 leaves after its 20 migrations.
--
-- Written for this project from the documented interface (GRAPHILE_WORKER.md, sections 2 and 4);
-- it is not a copy of the upstream migrations. The installer (worker_admin/installer.py) replaces
-- the schema placeholder with a double-quoted identifier and runs this file in the caller's
-- transaction, after it has checked that the schema holds no worker objects yet.
--
-- Object names, column order, sequence names and function signatures matter: Node and Rust
-- workers query them directly, and later upstream migrations refer to constraints by name. The
-- test suite compares the catalog this file produces with the one the real npm package produces.

create schema if not exists {{schema}};

-- The row type of a batch for add_jobs().
create type {{schema}}.job_spec as (
  identifier text,
  payload json,
  queue_name text,
  run_at timestamptz,
  max_attempts smallint,
  job_key text,
  priority smallint,
  flags text[]
);

-- NOT NULL constraints carry the names the real package's tables have. PostgreSQL 18 records
-- them in pg_constraint, named after the table a column was first created in (the upstream
-- tables were renamed later, hence jobs_* on _private_jobs); PostgreSQL 17 and older accept
-- and discard the names, so the same file fits both.

-- Queues serialise their jobs: a worker locks the queue row while it runs one of its jobs.
create table {{schema}}._private_job_queues (
  id integer generated always as identity (sequence name {{schema}}.job_queues_id_seq)
    constraint job_queues_id_not_null not null,
  queue_name text constraint job_queues_queue_name_not_null1 not null,
  locked_at timestamptz,
  locked_by text,
  is_available boolean generated always as (locked_at is null) stored
    constraint job_queues_is_available_not_null not null,
  constraint job_queues_pkey1 primary key (id),
  constraint job_queues_queue_name_key unique (queue_name),
  constraint job_queues_queue_name_check check (length(queue_name) <= 128)
);

-- Task identifiers are interned so that every job row carries a small integer instead.
create table {{schema}}._private_tasks (
  id integer generated always as identity (sequence name {{schema}}.tasks_id_seq)
    constraint tasks_id_not_null not null,
  identifier text constraint tasks_identifier_not_null not null,
  constraint tasks_pkey primary key (id),
  constraint tasks_identifier_key unique (identifier),
  constraint tasks_identifier_check check (length(identifier) <= 128)
);

-- job_queue_id and task_id deliberately have no foreign keys: the upstream schema has none, and
-- workers rely on deleting queues and tasks without cascading checks on the hot jobs table.
create table {{schema}}._private_jobs (
  id bigint generated always as identity (sequence name {{schema}}.jobs_id_seq1)
    constraint jobs_id_not_null1 not null,
  job_queue_id integer,
  task_id integer constraint jobs_task_id_not_null not null,
  payload json default '{}'::json constraint jobs_payload_not_null1 not null,
  priority smallint default 0 constraint jobs_priority_not_null1 not null,
  run_at timestamptz default now() constraint jobs_run_at_not_null1 not null,
  attempts smallint default 0 constraint jobs_attempts_not_null1 not null,
  max_attempts smallint default 25 constraint jobs_max_attempts_not_null1 not null,
  last_error text,
  created_at timestamptz default now() constraint jobs_created_at_not_null1 not null,
  updated_at timestamptz default now() constraint jobs_updated_at_not_null1 not null,
  key text,
  locked_at timestamptz,
  locked_by text,
  revision integer default 0 constraint jobs_revision_not_null1 not null,
  flags jsonb,
  is_available boolean
    generated always as ((locked_at is null) and (attempts < max_attempts)) stored
    constraint jobs_is_available_not_null not null,
  constraint jobs_pkey1 primary key (id),
  constraint jobs_key_key1 unique (key),
  constraint jobs_key_check check ((length(key) > 0) and (length(key) <= 512)),
  constraint jobs_max_attempts_check check (max_attempts >= 1)
);

-- The two indexes the workers' "get job" query needs; nothing else is indexed on purpose.
create index jobs_main_index
  on {{schema}}._private_jobs using btree (priority, run_at)
  include (id, task_id, job_queue_id)
  where (is_available = true);

create index jobs_no_queue_index
  on {{schema}}._private_jobs using btree (priority, run_at)
  include (id, task_id)
  where ((is_available = true) and (job_queue_id is null));

create table {{schema}}._private_known_crontabs (
  identifier text constraint known_crontabs_identifier_not_null not null,
  known_since timestamptz constraint known_crontabs_known_since_not_null not null,
  last_execution timestamptz,
  constraint known_crontabs_pkey primary key (identifier)
);

-- Row-level security with no policies: only the owner (or a BYPASSRLS role) reads these tables
-- directly; everyone else goes through the jobs view and the functions below.
alter table {{schema}}._private_job_queues enable row level security;
alter table {{schema}}._private_tasks enable row level security;
alter table {{schema}}._private_jobs enable row level security;
alter table {{schema}}._private_known_crontabs enable row level security;

create table {{schema}}.migrations (
  id integer constraint migrations_id_not_null not null,
  ts timestamptz default now() constraint migrations_ts_not_null not null,
  breaking boolean default false constraint migrations_breaking_not_null not null,
  constraint migrations_pkey primary key (id)
);

-- A readable projection of jobs: names instead of ids, without payload and is_available. It runs
-- with the owner's rights, so it shows every job even to roles that RLS hides the tables from.
create view {{schema}}.jobs as
  select
    job.id,
    queue.queue_name,
    task.identifier as task_identifier,
    job.priority,
    job.run_at,
    job.attempts,
    job.max_attempts,
    job.last_error,
    job.created_at,
    job.updated_at,
    job.key,
    job.locked_at,
    job.locked_by,
    job.revision,
    job.flags
  from {{schema}}._private_jobs as job
  inner join {{schema}}._private_tasks as task on task.id = job.task_id
  left join {{schema}}._private_job_queues as queue on queue.id = job.job_queue_id;


-- add_job: insert one job, or update the job that already holds job_key.
--
-- A keyed job that a worker has locked, or that has permanently failed, cannot be updated in
-- place: it gives up its key (and, since it must not run again under an old definition, its
-- remaining attempts) and a fresh job takes the key. With unsafe_dedupe an existing job is only
-- touched (revision and updated_at), whatever its state.
create function {{schema}}.add_job(
  identifier text,
  payload json default null,
  queue_name text default null,
  run_at timestamptz default null,
  max_attempts integer default null,
  job_key text default null,
  priority integer default null,
  flags text[] default null,
  job_key_mode text default 'replace'
) returns {{schema}}._private_jobs
language plpgsql
as $body$
#variable_conflict use_column
declare
  v_task_id integer;
  v_queue_id integer;
  v_flags jsonb;
  v_payload json := coalesce(add_job.payload, '{}'::json);
  v_run_at timestamptz := coalesce(add_job.run_at, now());
  v_max_attempts smallint;
  v_priority smallint;
  v_job {{schema}}._private_jobs;
begin
  -- A bad mode is refused before anything is written, so it draws no identity value either. A
  -- null mode behaves like the default, 'replace'; without a key the mode does not matter.
  if add_job.job_key is not null and add_job.job_key_mode is not null
      and add_job.job_key_mode not in ('replace', 'preserve_run_at', 'unsafe_dedupe') then
    raise exception 'invalid job_key_mode %: expected replace, preserve_run_at or unsafe_dedupe',
        quote_literal(add_job.job_key_mode)
      using errcode = 'GWBKM';
  end if;

  -- max_attempts and priority are smallints in a job row: an out-of-range value fails here,
  -- before anything is written. unsafe_dedupe converts them in its INSERT instead, after the
  -- task and queue rows and the job id were drawn, which is where upstream fails too.
  if add_job.job_key is null or add_job.job_key_mode is distinct from 'unsafe_dedupe' then
    v_max_attempts := coalesce(add_job.max_attempts, 25);
    v_priority := coalesce(add_job.priority, 0);
  end if;

  -- Missing task and queue rows are created first, and only missing ones: an INSERT that meets
  -- an existing row still draws an identity value, which on a busy queue would exhaust the
  -- 32-bit task and queue ids. ON CONFLICT DO NOTHING covers a concurrent inserter of the same
  -- name (it waits for it), and the following SELECT (a new snapshot) sees whichever row won.
  insert into {{schema}}._private_tasks (identifier)
    select add_job.identifier
      where not exists (
        select from {{schema}}._private_tasks as t where t.identifier = add_job.identifier
      )
    on conflict (identifier) do nothing;
  select t.id into v_task_id
    from {{schema}}._private_tasks as t
    where t.identifier = add_job.identifier;

  if add_job.queue_name is not null then
    insert into {{schema}}._private_job_queues (queue_name)
      select add_job.queue_name
        where not exists (
          select from {{schema}}._private_job_queues as q
            where q.queue_name = add_job.queue_name
        )
      on conflict (queue_name) do nothing;
    select q.id into v_queue_id
      from {{schema}}._private_job_queues as q
      where q.queue_name = add_job.queue_name;
  end if;

  -- Flags are stored as a set: {"flag": true, ...}; no flags (or an empty array) is null.
  select jsonb_object_agg(f.flag, true) into v_flags
    from unnest(add_job.flags) as f (flag);

  if add_job.job_key is null then
    insert into {{schema}}._private_jobs
        (job_queue_id, task_id, payload, priority, run_at, max_attempts, flags)
      values (v_queue_id, v_task_id, v_payload, v_priority, v_run_at, v_max_attempts, v_flags)
      returning * into v_job;
    perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', 1)::text);
    return v_job;
  end if;

  if add_job.job_key_mode = 'unsafe_dedupe' then
    -- One statement, so two racing callers cannot both insert: the second one's ON CONFLICT
    -- finds the first one's row. An existing job is returned as it is, even when a worker runs
    -- it; only revision and updated_at move. Like every INSERT, this draws a job id even when
    -- the key exists, as upstream does, so job ids stay in step with a Node-installed schema.
    insert into {{schema}}._private_jobs as j
        (job_queue_id, task_id, payload, priority, run_at, max_attempts, key, flags)
      values (v_queue_id, v_task_id, v_payload, coalesce(add_job.priority, 0)::smallint,
              v_run_at, coalesce(add_job.max_attempts, 25)::smallint, add_job.job_key, v_flags)
      on conflict (key) do update set
        revision = j.revision + 1,
        updated_at = now()
      returning * into v_job;
    -- Only a new job has revision 0 here (an existing one was just bumped): notify for it alone.
    if v_job.revision = 0 then
      perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', 1)::text);
    end if;
    return v_job;
  end if;

  loop
    -- A running or permanently failed job cannot take the new definition: detach it.
    update {{schema}}._private_jobs as j
      set key = null,
          attempts = j.max_attempts,
          updated_at = now()
      where j.key = add_job.job_key
        and not j.is_available;

    insert into {{schema}}._private_jobs as j
        (job_queue_id, task_id, payload, priority, run_at, max_attempts, key, flags)
      values (v_queue_id, v_task_id, v_payload, v_priority, v_run_at, v_max_attempts,
              add_job.job_key, v_flags)
      on conflict (key) do update set
        job_queue_id = excluded.job_queue_id,
        task_id = excluded.task_id,
        -- Two JSON arrays are merged so that keyed "batch jobs" accumulate their items.
        payload = case
          when json_typeof(j.payload) = 'array' and json_typeof(excluded.payload) = 'array'
            then (j.payload::jsonb || excluded.payload::jsonb)::json
          else excluded.payload
        end,
        priority = excluded.priority,
        -- preserve_run_at keeps the old run_at only for a job that has not failed yet: once it
        -- has (attempts > 0), run_at is its retry time, and the new definition takes over.
        run_at = case
          when add_job.job_key_mode = 'preserve_run_at' and j.attempts = 0 then j.run_at
          else excluded.run_at
        end,
        max_attempts = excluded.max_attempts,
        flags = excluded.flags,
        revision = j.revision + 1,
        attempts = 0,
        last_error = null,
        updated_at = now()
      where j.locked_at is null
      returning * into v_job;

    -- Not found only when a worker locked the job between the two statements: detach it too.
    exit when found;
  end loop;

  perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', 1)::text);
  return v_job;
end;
$body$;


-- add_jobs: insert (or replace, by job_key) a batch of jobs in one statement.
--
-- There is no per-job key mode: a batch always replaces, and job_key_preserve_run_at applies to
-- every keyed job of the batch. unsafe_dedupe cannot be expressed here at all, which is how the
-- batch API rejects it. Two specs with the same key in one batch fail with SQLSTATE 21000.
create function {{schema}}.add_jobs(
  specs {{schema}}.job_spec[],
  job_key_preserve_run_at boolean default false
) returns setof {{schema}}._private_jobs
language plpgsql
as $body$
#variable_conflict use_column
declare
  v_count integer;
begin
  -- Only missing tasks and queues are inserted, as in add_job (no identity value is drawn for a
  -- name that exists).
  insert into {{schema}}._private_tasks (identifier)
    select distinct s.identifier
      from unnest(add_jobs.specs) as s
      where not exists (
        select from {{schema}}._private_tasks as t where t.identifier = s.identifier
      )
    on conflict (identifier) do nothing;

  insert into {{schema}}._private_job_queues (queue_name)
    select distinct s.queue_name
      from unnest(add_jobs.specs) as s
      where s.queue_name is not null
        and not exists (
          select from {{schema}}._private_job_queues as q where q.queue_name = s.queue_name
        )
    on conflict (queue_name) do nothing;

  -- Running or permanently failed jobs give up their keys (see add_job).
  update {{schema}}._private_jobs as j
    set key = null,
        attempts = j.max_attempts,
        updated_at = now()
    where j.key in (
        select s.job_key from unnest(add_jobs.specs) as s where s.job_key is not null
      )
      and not j.is_available;

  return query
    insert into {{schema}}._private_jobs as j
        (job_queue_id, task_id, payload, priority, run_at, max_attempts, key, flags)
      select
        q.id,
        t.id,
        coalesce(s.payload, '{}'::json),
        coalesce(s.priority, 0),
        coalesce(s.run_at, now()),
        coalesce(s.max_attempts, 25),
        s.job_key,
        (select jsonb_object_agg(f.flag, true) from unnest(s.flags) as f (flag))
      from unnest(add_jobs.specs) with ordinality as s
        (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, n)
      inner join {{schema}}._private_tasks as t on t.identifier = s.identifier
      left join {{schema}}._private_job_queues as q on q.queue_name = s.queue_name
      order by s.n
    on conflict (key) do update set
      job_queue_id = excluded.job_queue_id,
      task_id = excluded.task_id,
      payload = case
        when json_typeof(j.payload) = 'array' and json_typeof(excluded.payload) = 'array'
          then (j.payload::jsonb || excluded.payload::jsonb)::json
        else excluded.payload
      end,
      priority = excluded.priority,
      run_at = case  -- the old run_at is kept only while the job has not failed (see add_job)
        when add_jobs.job_key_preserve_run_at and j.attempts = 0 then j.run_at
        else excluded.run_at
      end,
      max_attempts = excluded.max_attempts,
      flags = excluded.flags,
      revision = j.revision + 1,
      attempts = 0,
      last_error = null,
      updated_at = now()
    where j.locked_at is null
    returning *;

  -- Every call notifies, counting the specs as upstream does. An empty batch notifies with an
  -- empty payload, as upstream's does too (Node workers read a missing count as 1).
  v_count := array_length(add_jobs.specs, 1);
  perform pg_notify('jobs:insert', case
    when v_count is null then ''
    else json_build_object('r', random(), 'count', v_count)::text
  end);
end;
$body$;


-- THE 4-HOUR RULE for the four administrative functions below: a job locked less than four hours
-- ago belongs to a live worker and is silently skipped; an older lock is considered abandoned
-- (Node pools free such locks too), so the job can be acted on.

-- complete_jobs: delete the given jobs and return them (there is no "completed" state).
create function {{schema}}.complete_jobs(job_ids bigint[])
returns setof {{schema}}._private_jobs
language sql
as $body$
  delete from {{schema}}._private_jobs as j
    where j.id = any (complete_jobs.job_ids)
      and (j.locked_at is null or j.locked_at < now() - interval '4 hours')
    returning *;
$body$;

-- permanently_fail_jobs: use up the remaining attempts so no worker picks the jobs again.
create function {{schema}}.permanently_fail_jobs(job_ids bigint[], error_message text default null)
returns setof {{schema}}._private_jobs
language sql
as $body$
  update {{schema}}._private_jobs as j
    set last_error = coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed'),
        attempts = j.max_attempts,
        updated_at = now()
    where j.id = any (permanently_fail_jobs.job_ids)
      and (j.locked_at is null or j.locked_at < now() - interval '4 hours')
    returning *;
$body$;

-- reschedule_jobs: each non-null argument replaces the current value; null keeps it (including
-- run_at: rescheduling "now" must be asked for explicitly).
create function {{schema}}.reschedule_jobs(
  job_ids bigint[],
  run_at timestamptz default null,
  priority integer default null,
  attempts integer default null,
  max_attempts integer default null
) returns setof {{schema}}._private_jobs
language sql
as $body$
  update {{schema}}._private_jobs as j
    set run_at = coalesce(reschedule_jobs.run_at, j.run_at),
        priority = coalesce(reschedule_jobs.priority::smallint, j.priority),
        attempts = coalesce(reschedule_jobs.attempts::smallint, j.attempts),
        max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, j.max_attempts),
        updated_at = now()
    where j.id = any (reschedule_jobs.job_ids)
      and (j.locked_at is null or j.locked_at < now() - interval '4 hours')
    returning *;
$body$;

-- remove_job: delete the job holding job_key. A job that a live worker holds is not deleted
-- under it: it loses the key and its remaining attempts, so it will not run again after this run.
create function {{schema}}.remove_job(job_key text)
returns {{schema}}._private_jobs
language plpgsql
strict
as $body$
#variable_conflict use_column
declare
  v_job {{schema}}._private_jobs;
begin
  update {{schema}}._private_jobs as j
    set key = null,
        attempts = j.max_attempts,
        updated_at = now()
    where j.key = remove_job.job_key
      and j.locked_at >= now() - interval '4 hours'
    returning * into v_job;
  if found then
    return v_job;
  end if;

  delete from {{schema}}._private_jobs as j
    where j.key = remove_job.job_key
      and (j.locked_at is null or j.locked_at < now() - interval '4 hours')
    returning * into v_job;
  if found then
    perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', -1)::text);
  end if;
  -- No such job: a row of nulls, as upstream returns.
  return v_job;
end;
$body$;

-- force_unlock_workers: release every lock held by the given worker ids, on jobs and on queues.
-- Attempts, run_at and last_error are left alone: the jobs simply become runnable again.
create function {{schema}}.force_unlock_workers(worker_ids text[])
returns void
language sql
as $body$
  update {{schema}}._private_jobs as j
    set locked_at = null,
        locked_by = null
    where j.locked_by = any (force_unlock_workers.worker_ids);
  update {{schema}}._private_job_queues as q
    set locked_at = null,
        locked_by = null
    where q.locked_by = any (force_unlock_workers.worker_ids);
$body$;


-- Record the 20 migrations of graphile-worker 0.18.0 as applied, with the breaking flags the Node
-- runner records, so that a Node worker starting on this schema finds it up to date.
insert into {{schema}}.migrations (id, breaking)
  select m.id, m.id in (1, 3, 11, 13, 14, 16, 19)
    from generate_series(1, 20) as m (id);
