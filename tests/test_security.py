"""Security, checked over the whole URLconf rather than page by page:

- every URL needs a login, except the few listed in ANONYMOUS with the reason;
- a viewer reads and never writes, on every endpoint that accepts a write;
- every POST needs the CSRF token, and the token the page hands to htmx is accepted;
- the headers: Content-Security-Policy, X-Frame-Options, nosniff, referrer policy.

A URL added later is walked too: the walk fails until the new URL is classified here.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from worker_admin import audit
from worker_admin.audit import AuditEntry

# -- the URLconf, walked -----------------------------------------------------------------------

SAMPLES = {
    "int": "1",
    "str": "x",
    "slug": "x",
    "path": "x",
    "uuid": "00000000-0000-0000-0000-000000000001",
}


def _sample_route(route: str) -> str:
    """A concrete path for a route (`jobs/<int:job_id>/`) or a regex (`^(?P<app_label>auth)/$`)."""
    route = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLES.get(m.group(1) or "str", "x"), route)
    # Named regex groups: the first alternative when it is a word list, else "1".
    route = re.sub(
        r"\(\?P<\w+>([^)]*)\)",
        lambda m: m.group(1).split("|")[0] if re.fullmatch(r"[\w|]+", m.group(1)) else "1",
        route,
    )
    return route.replace("^", "").replace("$", "").replace("\\", "")


def walk(patterns=None, prefix: str = "", namespace: str = ""):
    """(url name with namespace, concrete path) for every pattern of the project."""
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + _sample_route(str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            ns = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from walk(pattern.url_patterns, route, ns)
        elif isinstance(pattern, URLPattern):
            yield f"{namespace}{pattern.name or route}", "/" + route


URLS = sorted(set(walk()))

# Open without the console's login, and why. Anything else must send an anonymous visitor to
# the login page (the admin site to its own login page; the JSON API answers 401 itself).
ANONYMOUS = {
    "login": "the login page itself",
    "healthz": "load balancers probe it; it says only whether the databases answer",
    "metrics": "its own bearer-token or network check (METRICS_TOKEN, METRICS_ALLOWED_NETWORKS)",
    "admin:login": "the admin site's own login page",
    "favicon": "a redirect to the static icon, asked for by browsers on every page",
    "api:api-root": "the JSON API's root: a 404, it lists nothing",
}
API_DOCS_PAGE = "api:openapi-view"  # for people: it sends them to the login page
API_PREFIX = "/api/"

# Every console endpoint that changes something (POST), and the pages that only read.
WRITES = {
    "worker_admin:add_job": "operator",
    "worker_admin:add_batch": "operator",
    "worker_admin:job_action": "operator",
    "worker_admin:continue_action": "operator",
    "worker_admin:undo": "operator",
    "worker_admin:reveal_payload": "operator",
    "worker_admin:add_recovery": "admin",
    "worker_admin:index_change": "admin",
    "worker_admin:sweep": "admin",
    "worker_admin:force_unlock": "admin",
    "worker_admin:cleanup": "admin",
}
READS = {
    "worker_admin:overview",
    "worker_admin:jobs",
    "worker_admin:job_detail",
    "worker_admin:failures",
    "worker_admin:queues",
    "worker_admin:tasks",
    "worker_admin:task",
    "worker_admin:queue",
    "worker_admin:workers",
    "worker_admin:crons",
    "worker_admin:maintenance",
    "worker_admin:audit",
    "worker_admin:audit_entry",
    "worker_admin:worker",
    "worker_admin:history",
    "worker_admin:history_charts",
    "worker_admin:sweep_replacements",
}


def test_walk__finds_the_console_pages():
    names = {name for name, _ in URLS}
    assert {"worker_admin:overview", "worker_admin:job_detail", "login", "admin:index"} <= names
    assert ("worker_admin:job_detail", "/jobs/1/") in URLS


def test_walk__every_console_url_is_classified_as_read_or_write():
    console = {name for name, _ in URLS if name.startswith("worker_admin:")}
    assert console == READS | set(WRITES), "classify the new URL in READS or WRITES"


@pytest.mark.parametrize(("name", "url"), URLS, ids=[u for _, u in URLS])
def test_login__anonymous_request_goes_to_the_login_page(client, db, name, url):
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        if name in ANONYMOUS:
            assert response.status_code in (200, 301, 302, 403, 404, 405), (
                method,
                response.status_code,
            )
            assert response.status_code != 302 or "/login/" not in response.get("Location", "")
            continue
        if name == API_DOCS_PAGE:
            assert response["Location"].startswith(f"{reverse('login')}?next=")
            continue
        if url.startswith(API_PREFIX):
            assert response.status_code in (401, 405), (method, response.status_code)
            continue
        assert response.status_code == 302, (method, response.status_code)
        # The admin site's pages go to the console's login (LoginRequiredMiddleware) or to
        # the admin's own; both ask for a password before anything is shown.
        logins = (reverse("login"), reverse("admin:login"))
        assert response["Location"].startswith(tuple(f"{u}?next=" for u in logins))


def test_login__metrics_refuses_an_anonymous_outsider(client, db):
    response = client.get(reverse("metrics"), REMOTE_ADDR="203.0.113.9")
    assert response.status_code in (401, 403)


def test_login__the_exceptions_exist():
    """A listed exception that no longer exists would hide a mistake: keep the list true."""
    names = {name for name, _ in URLS}
    assert set(ANONYMOUS) <= names


# -- viewers read, never write -----------------------------------------------------------------


@pytest.fixture
def target(jobs):
    """A job and an undoable audit entry, so every write endpoint has something to act on."""
    job = jobs.failed()
    entry = audit.record(
        actor="someone",
        via="cli",
        action="fail",
        outcome="done",
        changed_ids=[job.id],
        before_image=[audit.job_image(job)],
    )
    return job, entry


def _url(name: str, job_id: int, entry_id: int) -> str:
    if name == "worker_admin:undo":
        return reverse(name, args=[entry_id])
    if name == "worker_admin:reveal_payload":
        return reverse(name, args=[job_id])
    return reverse(name)


# What an operator would send to act: the endpoint refuses the viewer before looking at it.
BODIES = {
    "worker_admin:add_job": {"task": "send_email", "payload": "{}", "confirm": "1"},
    "worker_admin:add_batch": {"jobs": '[{"task": "send_email"}]', "confirm": "1"},
    "worker_admin:job_action": {"action": "complete", "ids": "{job}", "token": "x"},
    "worker_admin:continue_action": {"batch": "x"},
    "worker_admin:undo": {"token": "x"},
    "worker_admin:add_recovery": {"confirm": "1"},
    "worker_admin:index_change": {"name": "console_jobs_task", "action": "create", "token": "x"},
    "worker_admin:sweep": {"dry_run": "", "token": "x"},
    "worker_admin:force_unlock": {"worker_ids": "w1", "token": "x"},
    "worker_admin:cleanup": {"tasks": "failed_jobs", "token": "x"},
}


def _jobs_snapshot(jobs) -> list[tuple]:
    return jobs.sql(
        "SELECT id, run_at, attempts, max_attempts, last_error, locked_by, revision, payload::text "
        "FROM graphile_worker._private_jobs ORDER BY id"
    )


def _writes(name: str, role: str) -> bool:
    order = ["viewer", "operator", "admin"]
    return order.index(role) >= order.index(WRITES[name])


BELOW = [(n, r) for n in sorted(WRITES) for r in ("viewer", "operator") if not _writes(n, r)]


@pytest.mark.parametrize(("name", "role"), BELOW)
def test_roles__a_role_below_the_endpoint_gets_403_and_nothing_changes(
    login_as, jobs, target, name, role
):
    job, entry = target
    client = login_as(role, f"{role}-user")
    before, audited = _jobs_snapshot(jobs), AuditEntry.objects.count()
    body = {k: v.replace("{job}", str(job.id)) for k, v in BODIES.get(name, {}).items()}
    response = client.post(_url(name, job.id, entry.pk), body)
    assert response.status_code == 403
    # The refusal names the role that is needed (an operator at a maintenance action is told
    # admin, not operator), and the page shows the role the user has where it says so.
    refusal = response.content.decode()
    assert f"needs the {WRITES[name]} role" in refusal
    assert "needs the operator role" not in refusal or WRITES[name] == "operator"
    if name != "worker_admin:reveal_payload":
        assert f"with the {role} role" in refusal
    assert _jobs_snapshot(jobs) == before
    assert not AuditEntry.objects.filter(outcome="done").exclude(pk=entry.pk).exists()
    assert AuditEntry.objects.count() == audited + 1  # the refusal is on the record
    assert AuditEntry.objects.latest("id").outcome == "rejected"


@pytest.mark.parametrize("name", sorted(set(WRITES) - {"worker_admin:reveal_payload"}))
def test_roles__read_only_mode_refuses_even_an_admin(settings, login_as, jobs, target, name):
    settings.READ_ONLY = True
    job, entry = target
    client = login_as("admin", "adele")
    before = _jobs_snapshot(jobs)
    body = {k: v.replace("{job}", str(job.id)) for k, v in BODIES.get(name, {}).items()}
    response = client.post(_url(name, job.id, entry.pk), body)
    assert response.status_code == 403
    assert "read-only" in response.content.decode()
    assert _jobs_snapshot(jobs) == before


@pytest.mark.parametrize("name", sorted(READS))
def test_roles__viewer_reads_every_page(login_as, jobs, target, name):
    job, entry = target
    args = {
        "worker_admin:job_detail": [job.id],
        "worker_admin:audit_entry": [entry.pk],
        "worker_admin:worker": [jobs.locked(by="graphile_worker_v1").locked_by],
        "worker_admin:task": ["send_email"],  # the target job's task
        "worker_admin:queue": [jobs.ready(queue_name="sec_queue") and "sec_queue"],
    }.get(name, [])
    assert login_as("viewer", "vera").get(reverse(name, args=args)).status_code == 200


# -- CSRF --------------------------------------------------------------------------------------

CSRF_FAILED = "CSRF verification failed"


@pytest.fixture
def csrf_admin(django_user_model, db):
    user = django_user_model.objects.create_user("adele", password="pw-123456789")
    user.groups.add(Group.objects.get(name="admin"))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _page_token(client: Client, url: str = "/") -> str:
    """The token as htmx sends it: from the hx-headers attribute on <body> (base.html)."""
    page = client.get(url).content.decode()
    attribute = re.search(r"<body hx-headers='([^']*)'", page)
    assert attribute, "base.html hands htmx the token in hx-headers"
    return json.loads(attribute.group(1))["X-CSRFToken"]


@pytest.mark.parametrize("name", sorted(WRITES))
def test_csrf__post_without_the_token_is_403_and_changes_nothing(csrf_admin, jobs, target, name):
    job, entry = target
    before, audited = _jobs_snapshot(jobs), AuditEntry.objects.count()
    body = {k: v.replace("{job}", str(job.id)) for k, v in BODIES.get(name, {}).items()}
    for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
        response = csrf_admin.post(_url(name, job.id, entry.pk), body, **headers)
        assert response.status_code == 403
        assert CSRF_FAILED in response.content.decode()
    assert _jobs_snapshot(jobs) == before
    assert AuditEntry.objects.count() == audited


@pytest.mark.parametrize("name", sorted(WRITES))
def test_csrf__the_token_from_the_page_is_accepted_as_htmx_sends_it(csrf_admin, target, name):
    job, entry = target
    token = _page_token(csrf_admin)
    body = {k: v.replace("{job}", str(job.id)) for k, v in BODIES.get(name, {}).items()}
    response = csrf_admin.post(
        _url(name, job.id, entry.pk), body, HTTP_X_CSRFTOKEN=token, HTTP_HX_REQUEST="true"
    )
    assert response.status_code != 403
    assert CSRF_FAILED not in response.content.decode()


def test_csrf__the_form_field_token_is_accepted(csrf_admin, target):
    job, _ = target
    page = csrf_admin.get(reverse("worker_admin:job_detail", args=[job.id])).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = csrf_admin.post(
        reverse("worker_admin:job_action"),
        {"action": "retry", "ids": str(job.id), "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 200
    assert "Retry" in response.content.decode()  # the preview


@pytest.mark.parametrize("url_name", ["login", "logout"])
def test_csrf__login_and_logout_need_the_token_too(db, url_name):
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse(url_name), {"username": "x", "password": "y"})
    assert response.status_code == 403


# -- headers -----------------------------------------------------------------------------------


def _policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {
        part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2]
        for part in header.split(";")
        if part.strip()
    }


@pytest.mark.parametrize("url", ["/login/", "/", "/jobs/", "/audit/"])
def test_headers__content_security_policy_forbids_inline_script(console, url):
    response = console.get(url)
    policy = _policy(response)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert "unsafe" not in response["Content-Security-Policy"]
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == "'self'"
    assert policy["base-uri"] == "'self'"
    assert policy["img-src"] == "'self' data:"


def test_headers__pages_have_no_inline_script_or_style(console, target):
    """What the policy would block, caught in the HTML as well as in the browser test."""
    job, _ = target
    for url in ["/login/", "/", "/jobs/", f"/jobs/{job.id}/", "/failures/", "/workers/"]:
        page = console.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), url
        assert not re.search(r"\son\w+=", page), url
        assert " style=" not in page and "<style" not in page, url


@pytest.mark.parametrize("url", ["/login/", "/", "/jobs/"])
def test_headers__clickjacking_and_sniffing(console, url):
    response = console.get(url)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
