"""Acting once for the maintenance writes still on worker_admin/actions.py (undo, the
Maintenance page's installs) has two layers, each pinned by its own message; job actions, adds,
cleanup, the sweep and force-unlock use one confirmation row instead
(worker_admin/operations/claims.py), pinned by the tests here and by
tests/test_operations_guarantees.py and tests/test_operations_recovery.py.

1. The session layer: issue_token keeps a confirmation's nonce in the session and redeem_token
   takes it out, so a confirmation sent again later is refused before anything is read or
   locked: "This confirmation was already used: the action ran once."
2. The audit layer: for requests that arrive together (both still find the nonce in their
   session), the one that comes second finds the first one's audit entry under an advisory lock:
   "... ran once, at <time> (audit entry #N, done). Nothing was done again."

The race of layer 2 is simulated deterministically by putting the used nonce back into the
session, as a request that read the session before the first one saved it would see it (the
real threads are in tests/test_concurrency.py)."""

from __future__ import annotations

import html
import re

import pytest

from worker_admin.audit import AuditEntry
from worker_admin.models import Job

AUDIT_LAYER = re.compile(
    r"This confirmation was already used: the action ran once, at [^()]+ "
    r"\(audit entry #(\d+), done\)\. Nothing was done again\."
)


def _token(response) -> str:
    return re.search(r'name="token" value="([^"]+)"', response.content.decode()).group(1)


def _text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


@pytest.fixture
def job_action(login_as, jobs):
    """A confirmed "run now" of one scheduled job: (client, form data with the token, job)."""
    client = login_as("operator", "op")
    job = jobs.scheduled()
    preview = client.post("/jobs/actions/", {"action": "run_now", "ids": [job.id]})
    data = {"action": "run_now", "ids": [job.id], "token": _token(preview)}
    assert client.post("/jobs/actions/", data).status_code == 302
    return client, data, job


@pytest.fixture
def sweep(login_as, jobs):
    """A confirmed sweep of one dead worker's job: (client, form data with the token)."""
    client = login_as("admin", "ada")
    jobs.sql("SELECT graphile_worker.worker_heartbeat('graphile_worker_dead')")
    jobs.sql(
        "UPDATE graphile_worker._private_workers SET last_heartbeat_at = now() - "
        "interval '20 minutes'"
    )
    jobs.locked(by="graphile_worker_dead", age="19 minutes")
    form = {"threshold_minutes": "5", "delay_seconds": "30"}
    preview = client.post("/maintenance/sweep/", form)
    data = {"token": _token(preview), "reason": "dead host"}
    assert client.post("/maintenance/sweep/", data).status_code == 302
    return client, data


def _done(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action, outcome="done"))


def test_acting_once__job_action_sent_again_is_stopped_by_its_confirmation_row(job_action):
    """Job actions keep no session layer: their confirmation is a row in the console's schema,
    consumed in the transaction that acts, so the refusal names the entry that did it."""
    client, data, job = job_action
    revision = Job.objects.get(id=job.id).revision

    again = client.post("/jobs/actions/", data)

    assert again.status_code == 400 and Job.objects.get(id=job.id).revision == revision
    [entry] = _done("run_now")
    assert AUDIT_LAYER.search(_text(again)).group(1) == str(entry.pk)


def test_acting_once__sweep_sent_again_is_stopped_by_its_confirmation_row(sweep):
    """The sweep, like the job actions, keeps its dry run as a confirmation row
    (operations/sweep.py): sent again, it is refused with the entry that acted."""
    client, data = sweep

    again = client.post("/maintenance/sweep/", data)

    assert again.status_code == 400
    [entry] = _done("sweep")
    assert AUDIT_LAYER.search(_text(again)).group(1) == str(entry.pk)
    assert "Audit entry #" in _text(again)  # the link to it
