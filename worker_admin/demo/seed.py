"""Realistic demo data: every job state, retries with real-looking errors, a small fleet.

Jobs are added through WorkerUtils (the same path as any caller); their history — attempts,
errors, locks — is then written the way workers would have written it, since no worker ran.
Randomness is seeded, so every demo database looks the same.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta

from django.db import connections, transaction

from worker_admin.installer import quote_schema
from worker_admin.utils import JobSpec, RawJobSpec, WorkerUtils

TASKS = {
    # identifier: (share of jobs, queue or None, max_attempts)
    "send_email": (0.34, "emails", 25),
    "deliver_webhook": (0.20, "webhooks", 10),
    "resize_image": (0.14, None, 5),
    "sync_inventory": (0.12, "inventory", 25),
    "generate_report": (0.10, "reports", 3),
    "charge_card": (0.07, "payments", 8),
    "nightly_digest": (0.03, None, 25),
}

ERRORS = {
    "send_email": [
        "SMTPRecipientsRefused: {'user{n}@example.org': (550, b'5.1.1 mailbox unavailable')}",
        "SMTPServerDisconnected: Connection unexpectedly closed by smtp.example.net",
    ],
    "deliver_webhook": [
        "HTTP 503 Service Unavailable from https://hooks.customer-{n}.example.net/events",
        "TimeoutError: POST https://hooks.customer-{n}.example.net/events timed out after 30000 ms",
    ],
    "resize_image": [
        "ValueError: image uploads/{n}.png has unsupported mode 'CMYK'",
        "MemoryError: cannot allocate 412876800 bytes for image uploads/{n}.tiff",
    ],
    "sync_inventory": [
        "Error: connect ECONNREFUSED 10.0.3.17:5432",
        "KeyError: 'sku'\n  File \"/app/tasks/inventory.py\", line 88, in sync_inventory\n"
        "    sku = row['sku']",
    ],
    "generate_report": [
        "TypeError: Cannot read properties of undefined (reading 'rows')\n"
        "    at buildSection (/app/tasks/generate_report.js:142:31)\n"
        "    at async Promise.all (index {n})\n"
        "    at async generateReport (/app/tasks/generate_report.js:57:5)",
    ],
    "charge_card": [
        "CardError: card_declined (insufficient_funds) for customer cus_{n}",
        "TimeoutError: request to https://api.example-payments.com/v1/charges timed out",
    ],
    "nightly_digest": ["Error: digest for account {n} already sent today"],
}

WORKER_HOSTS = ["ip-10-0-1-21", "ip-10-0-1-22", "ip-10-0-2-14", "ip-10-0-2-15"]
ORPHAN_LOCK_HOLDER = "pool-7f3a9c2e1b"  # a Node pool: Node workers never register


@dataclass(frozen=True)
class SeedResult:
    jobs: int
    healthy_workers: list[str]
    stale_worker: str
    orphan_lock_holder: str


def seed_demo(utils: WorkerUtils, *, jobs: int = 2400, seed: int = 7) -> SeedResult:
    rng = random.Random(seed)
    with transaction.atomic(using=utils.alias):
        added = utils.add_raw_jobs([_job(rng, n) for n in range(jobs)])
        ids = sorted(job.id for job in added)
        workers = [f"graphile_worker_{rng.getrandbits(40):010x}" for _ in WORKER_HOSTS]
        with connections[utils.alias].cursor() as cursor:
            history = _History(cursor, quote_schema(utils.schema), rng)
            history.register(workers)
            history.backdate(ids)
            history.retries_and_failures(ids)
            history.locks(ids, healthy=workers[:-1], stale=workers[-1])
    return SeedResult(len(added), workers[:-1], workers[-1], ORPHAN_LOCK_HOLDER)


def _job(rng: random.Random, n: int) -> RawJobSpec:
    identifier = rng.choices(list(TASKS), weights=[t[0] for t in TASKS.values()])[0]
    _, queue, max_attempts = TASKS[identifier]
    if rng.random() < 0.65:
        run_at_offset = -timedelta(seconds=rng.randint(1, 1800))  # ready
    else:
        run_at_offset = timedelta(minutes=rng.randint(2, 2 * 24 * 60))  # scheduled
    flags = []
    if identifier == "charge_card" or rng.random() < 0.05:
        flags.append("infrastructure_resilient")
    if identifier == "resize_image" and rng.random() < 0.5:
        flags.append("high_memory")
    spec = JobSpec(
        queue_name=queue if queue and rng.random() < 0.9 else None,
        run_at=_now() + run_at_offset,
        max_attempts=max_attempts,
        job_key=f"{identifier}:{n}" if rng.random() < 0.25 else None,
        priority=rng.choice([0, 0, 0, 0, 1, 5, -5]),
        flags=flags or None,
    )
    return RawJobSpec(identifier, _payload(rng, identifier, n), spec)


def _payload(rng: random.Random, identifier: str, n: int) -> dict:
    payload: dict = {"request_id": f"req_{rng.getrandbits(48):012x}", "tenant": rng.randint(1, 60)}
    if identifier == "send_email":
        payload |= {"to": f"user{n}@example.org", "template": rng.choice(["welcome", "receipt"])}
    elif identifier == "deliver_webhook":
        payload |= {
            "url": f"https://hooks.customer-{n % 90}.example.net/events",
            "event": "order.paid",
        }
    elif identifier == "generate_report":
        # The big ones: a report carries its row selection (a few kB).
        payload["rows"] = [
            {"sku": f"SKU-{rng.randint(1000, 9999)}", "qty": rng.randint(1, 40)}
            for _ in range(rng.randint(20, 180))
        ]
    else:
        payload["object_id"] = n
    if rng.random() < 0.1:
        payload["notes"] = "x" * rng.randint(100, 2000)
    return payload


def _now():
    from django.utils import timezone

    return timezone.now()


class _History:
    """Writes what workers would have written: attempts, errors, locks, heartbeats."""

    def __init__(self, cursor, qschema: str, rng: random.Random) -> None:
        self.cursor, self.q, self.rng = cursor, qschema, rng

    def register(self, workers: list[str]) -> None:
        for worker, host in zip(workers, WORKER_HOSTS, strict=True):
            pid = self.rng.randint(1000, 60000)
            self.cursor.execute(
                f"SELECT {self.q}.worker_heartbeat("
                "%s, json_build_object('pid', %s::int, 'hostname', %s::text))",
                [worker, pid, host],
            )
        # The last one stopped heartbeating 17 minutes ago: a crashed worker.
        self.cursor.execute(
            f"UPDATE {self.q}._private_workers SET "
            "last_heartbeat_at = now() - interval '17 minutes', "
            "started_at = now() - interval '3 hours' WHERE id = %s",
            [workers[-1]],
        )

    def backdate(self, ids: list[int]) -> None:
        """Every job was added before anything happened to it: between 7 and 30 hours ago, so
        before its oldest lock (6 hours) and its last failure (at most 90 minutes ago). Until
        something touches a job, updated_at is when it was created."""
        ages = [timedelta(minutes=self.rng.randint(7 * 60, 30 * 60)) for _ in ids]
        self.cursor.execute(
            f"UPDATE {self.q}._private_jobs AS j SET created_at = now() - a.age, "
            "updated_at = now() - a.age "
            "FROM unnest(%s::bigint[], %s::interval[]) AS a(id, age) WHERE j.id = a.id",
            [ids, ages],
        )

    def retries_and_failures(self, ids: list[int]) -> None:
        candidates = self.rng.sample(ids, k=min(len(ids), len(ids) // 6))
        failed = candidates[: len(candidates) // 3]
        retrying = candidates[len(candidates) // 3 :]
        rows = self._task_rows(candidates)
        for job_id in retrying:
            identifier, max_attempts = rows[job_id]
            attempts = self.rng.randint(1, max(1, max_attempts - 1))
            # Graphile Worker's backoff: exp(min(attempts, 10)) seconds after the failure.
            backoff = math.exp(min(attempts, 10))
            self._fail(job_id, identifier, attempts, f"now() + interval '{backoff:.0f} seconds'")
        for job_id in failed:
            identifier, max_attempts = rows[job_id]
            self._fail(job_id, identifier, max_attempts, "run_at")

    def _task_rows(self, ids: list[int]) -> dict[int, tuple[str, int]]:
        self.cursor.execute(
            f"SELECT j.id, t.identifier, j.max_attempts FROM {self.q}._private_jobs j "
            f"JOIN {self.q}._private_tasks t ON t.id = j.task_id WHERE j.id = ANY(%s)",
            [ids],
        )
        return {row[0]: (row[1], row[2]) for row in self.cursor.fetchall()}

    def _fail(self, job_id: int, identifier: str, attempts: int, run_at_sql: str) -> None:
        error = self.rng.choice(ERRORS[identifier]).replace("{n}", str(self.rng.randint(100, 9999)))
        self.cursor.execute(
            f"UPDATE {self.q}._private_jobs SET attempts = %s, last_error = %s, "
            f"run_at = {run_at_sql}, updated_at = now() - interval '1 minute' * %s WHERE id = %s",
            [attempts, error, self.rng.randint(0, 90), job_id],
        )

    def locks(self, ids: list[int], *, healthy: list[str], stale: str) -> None:
        self.cursor.execute(
            f"SELECT id FROM {self.q}._private_jobs WHERE locked_at IS NULL AND "
            "attempts < max_attempts AND run_at <= now() AND id = ANY(%s) ORDER BY id",
            [ids],
        )
        ready = [row[0] for row in self.cursor.fetchall()]
        picks = self.rng.sample(ready, k=min(len(ready), 48))
        groups = [
            *(
                (worker, picks[i * 9 : (i + 1) * 9], "%s seconds" % (5 + i * 40))
                for i, worker in enumerate(healthy)
            ),
            (stale, picks[27:42], "19 minutes"),  # held by the crashed worker
            (ORPHAN_LOCK_HOLDER, picks[42:48], "6 hours"),  # a Node pool that vanished
        ]
        for holder, job_ids, age in groups:
            self.cursor.execute(
                f"UPDATE {self.q}._private_jobs SET locked_by = %s, "
                "locked_at = now() - %s::interval, updated_at = now() - %s::interval, "
                "attempts = attempts + 1 WHERE id = ANY(%s)",
                [holder, age, age, job_ids],
            )
        # A serial queue held by a live worker: everything behind it waits.
        self.cursor.execute(
            f"UPDATE {self.q}._private_job_queues SET locked_by = %s, "
            "locked_at = now() - interval '40 seconds' WHERE queue_name = 'payments'",
            [healthy[0]],
        )


def keep_heartbeating(alias: str, schema: str, workers: list[str]) -> None:
    """Heartbeat the healthy demo workers, as their processes would (every 20 s)."""
    q = quote_schema(schema)
    with connections[alias].cursor() as cursor:
        for worker in workers:
            cursor.execute(f"SELECT {q}.worker_heartbeat(%s)", [worker])
