"""The pages' edges (issue 13): error pages in words, read-only URLs refuse writes' methods, the
favicon, the admin link, the maintenance pages' wording, and demo data whose times add up."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import reverse

from tests.test_security import URLS
from worker_admin.views import errors

# Words an error page must never show: exception class names and Python's own vocabulary.
PYTHON_WORDS = re.compile(
    r"Resolver404|Http404|PermissionDenied|SuspiciousOperation|Traceback|Exception|Error\b"
)


@pytest.fixture
def admin_client(login_as):
    return login_as("admin", "root")


def _plain(response) -> str:
    body = response.content.decode()
    text = re.sub(r"<[^>]+>", " ", body.split("<main", 1)[-1])
    assert not PYTHON_WORDS.search(text), text
    return text


# -- error pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/no-such-page/", "/jobs/x/", "/jobs/12/nothing/"])
def test_error_pages__unknown_url_says_no_page_and_links_home(admin_client, path):
    response = admin_client.get(path)
    assert response.status_code == 404
    text = _plain(response)
    assert "No page at this address." in text
    assert f'href="{reverse("worker_admin:overview")}"' in response.content.decode()


def test_error_pages__unknown_url_for_a_visitor_who_is_not_logged_in(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "No page at this address." in _plain(response)


def test_error_pages__a_views_own_sentence_is_kept(admin_client):
    response = admin_client.get(reverse("worker_admin:job_detail", args=[987654]))
    assert response.status_code == 404
    assert "There is no job 987654: it may have completed" in _plain(response)


def test_error_pages__403_in_words(client, django_user_model):
    """A user without a role may not read the audit log: the 403 page says so plainly."""
    client.force_login(django_user_model.objects.create_user("norole", password="pw-123456789"))
    response = client.get(reverse("worker_admin:audit"))
    assert response.status_code == 403
    text = _plain(response)
    assert "Your account may not open this page." in text


def test_error_pages__400_in_words(client, db):
    response = client.get("/", HTTP_HOST="evil.example.org")  # not in ALLOWED_HOSTS
    assert response.status_code == 400
    assert "The console could not read this request, so it did nothing with it." in _plain(response)


def test_error_pages__500_in_words(db):
    response = errors.server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert "Something went wrong" in _plain(response)


# -- methods: every read-only URL answers 405 to the writing methods -------------------------

# URLs whose views write on POST (they check their own method) and Django's admin site, whose
# views are Django's own; everything else only reads.
NOT_READ_ONLY = {
    "worker_admin:add_job",
    "worker_admin:add_batch",
    "worker_admin:job_action",
    "worker_admin:continue_action",
    "worker_admin:undo",
    "worker_admin:reveal_payload",
    "worker_admin:add_recovery",
    "worker_admin:sweep",
    "worker_admin:force_unlock",
    "worker_admin:cleanup",
    "login",
    "logout",
}


def _read_only(name: str, url: str) -> bool:
    if name in NOT_READ_ONLY or name.startswith("admin:"):
        return False
    return not url.startswith("/api/") or name in ("api:openapi-json", "api:openapi-view")


READ_ONLY_URLS = [(name, url) for name, url in URLS if _read_only(name, url)]


def test_methods__the_walk_covers_every_console_page_and_the_api_docs():
    names = {name for name, _ in READ_ONLY_URLS}
    assert {"worker_admin:audit", "worker_admin:overview", "worker_admin:jobs"} <= names
    assert {"api:openapi-json", "api:openapi-view", "healthz", "metrics"} <= names


@pytest.mark.parametrize(("name", "url"), READ_ONLY_URLS, ids=[u for _, u in READ_ONLY_URLS])
def test_methods__read_only_urls_refuse_put_patch_delete(admin_client, jobs, name, url):
    for method in ("put", "patch", "delete"):
        response = getattr(admin_client, method)(url)
        assert response.status_code == 405, (method, response.status_code)
    assert admin_client.get(url).status_code in (200, 301, 404)  # GET itself still answers


@pytest.mark.parametrize("name", sorted(NOT_READ_ONLY - {"login", "logout"}))
def test_methods__write_urls_refuse_put_patch_delete(admin_client, name):
    url = dict(URLS)[name]
    for method in ("put", "patch", "delete"):
        assert getattr(admin_client, method)(url).status_code == 405, method


# -- favicon ---------------------------------------------------------------------------------


def test_favicon__served_without_a_login(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/worker_admin/favicon.ico"
    icon = client.get(response["Location"])
    assert icon.status_code == 200
    body = b"".join(icon.streaming_content) if icon.streaming else icon.content
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file's header


# -- the admin site's link ---------------------------------------------------------------------

ADMIN_LINK = 'href="/django-admin/"'


def test_header__admins_see_the_admin_site_link(client, django_user_model):
    from worker_admin.roles import ensure_groups

    ensure_groups()
    user = django_user_model.objects.create_user("root", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name="admin"))
    client.force_login(user)
    page = client.get(reverse("worker_admin:overview")).content.decode()
    assert ADMIN_LINK in page and "Users and roles" in page
    assert client.get("/django-admin/").status_code == 200  # the link leads somewhere they may go


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_header__other_roles_do_not(login_as, role):
    client = login_as(role, f"a-{role}")
    page = client.get(reverse("worker_admin:overview")).content.decode()
    assert ADMIN_LINK not in page and "Users and roles" not in page


def test_header__an_admin_without_staff_status_does_not(login_as):
    """The admin site lets in staff only; a link it would refuse is not shown."""
    page = login_as("admin", "not-staff").get(reverse("worker_admin:overview")).content.decode()
    assert ADMIN_LINK not in page


# -- the maintenance pages speak in words ------------------------------------------------------

PARAMETER_NAMES = re.compile(r"include_node_lock_holders|keep_task_identifiers|=True|=False")


def _words(response) -> str:
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
    assert not PARAMETER_NAMES.search(text), PARAMETER_NAMES.search(text).group(0)
    return text


def test_maintenance_words__sweep_dry_run_says_whether_node_holders_are_included(
    admin_client, jobs
):
    jobs.locked(by="pool-abc123", age="6 hours")
    form = {"threshold_minutes": "5", "delay_seconds": "30"}
    text = _words(admin_client.post("/maintenance/sweep/", form))
    assert "Node lock holders left out." in text
    assert "pool-abc123" in text
    assert "a sweep with Node lock holders included recovers it" in text
    text = _words(admin_client.post("/maintenance/sweep/", form | {"include_node": "on"}))
    assert "Node lock holders included." in text
    assert "will release 1 job of 1 dead worker" in text


def test_maintenance_words__cleanup_preview_names_the_kept_task_identifiers(admin_client, jobs):
    jobs.ready("alpha")
    data = {"tasks": ["gc-task-identifiers"], "keep": "billing_sync\nsend_email"}
    text = _words(admin_client.post("/maintenance/cleanup/", data))
    assert "Kept task identifiers: billing_sync , send_email" in text
    assert "Add those identifiers to the task identifiers to keep." in text


# -- demo data: times in order ------------------------------------------------------------------


def test_demo_seed__no_job_is_touched_before_it_was_created(utils):
    from django.db.models import F, Q

    from worker_admin.demo.seed import seed_demo
    from worker_admin.models import Job

    seed_demo(utils, jobs=600)
    jobs = Job.objects.all()
    assert jobs.count() == 600
    assert not jobs.filter(updated_at__lt=F("created_at")).exists()
    assert not jobs.filter(locked_at__lt=F("created_at")).exists()
    # Something did happen to them: failures and locks came after the creation, not at it.
    assert jobs.filter(Q(last_error__isnull=False) | Q(locked_at__isnull=False)).count() > 50
    assert jobs.filter(updated_at__gt=F("created_at")).count() > 50


# -- the locked tab: lock age, sorted oldest first with keyset pages ----------------------------


def test_locked_tab__shows_lock_age_against_the_four_hour_mark(admin_client, jobs):
    jobs.locked(by="pool-old", age="5 hours")
    jobs.locked(by="graphile_worker_a", age="3 hours 30 minutes")
    jobs.locked(by="graphile_worker_b", age="2 minutes")
    text = _words(admin_client.get("/jobs/?state=locked"))
    assert "Lock age" in text
    assert "5h past the 4-hour mark" in text
    assert "3h 30m near the 4-hour mark" in text
    assert "2m of 4 h" in text


def test_locked_tab__sorts_by_lock_age_oldest_first_across_pages(admin_client, jobs):
    ages = list(range(1, 31))  # minutes; ids are added youngest lock first
    by_age = {jobs.locked(by=f"w{m}", age=f"{m} minutes").id: m for m in ages}
    response = admin_client.get("/jobs/?state=locked&sort=lock_age&size=25")
    first = [job.id for job in response.context["page"].jobs]
    assert [by_age[i] for i in first] == list(range(30, 5, -1))  # oldest lock first
    assert "no index orders jobs by when they were locked" in _words(response)
    second = admin_client.get("/jobs/" + response.context["page"].older_url)
    assert [by_age[job.id] for job in second.context["page"].jobs] == [5, 4, 3, 2, 1]
    back = admin_client.get("/jobs/" + second.context["page"].newer_url)
    assert [job.id for job in back.context["page"].jobs] == first


def test_locked_tab__the_header_links_to_the_lock_age_sort(admin_client, jobs):
    jobs.locked()
    page = admin_client.get("/jobs/?state=locked").content.decode()
    assert 'href="?state=locked&amp;sort=lock_age"' in page
    assert "Lock age, oldest first" in page  # offered in the sort menu too


def test_lock_age_sort__elsewhere_is_ignored_with_a_sentence(admin_client, jobs):
    jobs.ready()
    response = admin_client.get("/jobs/?state=ready&sort=lock_age")
    assert response.status_code == 200
    assert "The lock age sort orders locked jobs only: use it on the locked tab." in _words(
        response
    )
    assert response.context["sort_key"] == "priority"  # the ready tab's own default
    assert 'value="lock_age"' not in response.content.decode()  # not offered outside the tab


# -- the reschedule form: current values, ISO 8601 in UTC ----------------------------------------

ACTIONS = "/jobs/actions/"


def _token(response) -> str:
    return re.search(r'name="token" value="([^"]+)"', response.content.decode()).group(1)


def _input(response, name: str) -> str:
    pattern = rf'<input[^>]* name="{name}"[^>]* value="([^"]*)"'
    match = re.search(pattern, response.content.decode())
    assert match, name
    return match.group(1)


def test_reschedule_form__one_job_is_prefilled_with_its_current_values(login_as, jobs):
    client = login_as("operator", "op")
    job = jobs.scheduled(priority=3, max_attempts=7)
    jobs.set(job, attempts="2", run_at="'2031-05-06 07:08:09+00'")
    page = client.post(ACTIONS, {"action": "reschedule", "ids": [job.id]})
    assert page.status_code == 200
    assert _input(page, "run_at") == "2031-05-06T07:08:09Z"
    assert (_input(page, "priority"), _input(page, "attempts"), _input(page, "max_attempts")) == (
        "3",
        "2",
        "7",
    )
    text = _words(page)
    assert "Run at, UTC" in text and "YYYY-MM-DDTHH:MM:SSZ" in text
    assert "The fields hold the job's current values" in text


def test_reschedule_form__several_jobs_are_not_prefilled(login_as, jobs):
    client = login_as("operator", "op")
    ids = [jobs.scheduled(priority=3).id, jobs.scheduled(priority=4).id]
    page = client.post(ACTIONS, {"action": "reschedule", "ids": ids})
    assert _input(page, "run_at") == "" and _input(page, "priority") == ""


def test_reschedule_form__a_time_without_offset_is_utc_whatever_the_time_zone(
    login_as, jobs, settings
):
    from datetime import UTC, datetime

    from worker_admin.models import Job

    settings.TIME_ZONE = "America/New_York"  # the browser's or the server's zone plays no part
    client = login_as("operator", "op")
    job = jobs.scheduled()
    form = {"action": "reschedule", "ids": [job.id], "has_options": "1"}
    form["run_at"] = "2031-01-31T09:30"
    preview = client.post(ACTIONS, form)
    assert preview.status_code == 200, _words(preview)
    client.post(ACTIONS, form | {"token": _token(preview)})
    assert Job.objects.get(id=job.id).run_at == datetime(2031, 1, 31, 9, 30, tzinfo=UTC)
    # With Z, and with another offset, it means the same instant.
    for written in ("2031-01-31T09:30:00Z", "2031-01-31T10:30:00+01:00"):
        from worker_admin.forms_actions import RescheduleForm

        bound = RescheduleForm({"run_at": written})
        assert bound.is_valid(), bound.errors
        assert bound.cleaned_data["run_at"] == datetime(2031, 1, 31, 9, 30, tzinfo=UTC)


def test_reschedule_form__unchanged_past_run_at_is_kept_and_other_fields_apply(login_as, jobs):
    """A failed job's run at is in the past; sent back as pre-filled, it means "keep it"."""
    from worker_admin.models import Job

    client = login_as("operator", "op")
    job = jobs.failed()
    page = client.post(ACTIONS, {"action": "reschedule", "ids": [job.id]})
    form = {
        "action": "reschedule",
        "ids": [job.id],
        "has_options": "1",
        "run_at": _input(page, "run_at"),
        "current_run_at": _input(page, "current_run_at"),
        "priority": _input(page, "priority"),
        "attempts": "0",
        "max_attempts": _input(page, "max_attempts"),
    }
    preview = client.post(ACTIONS, form)
    assert preview.status_code == 200, _words(preview)
    client.post(ACTIONS, form | {"token": _token(preview), "reason": "retry after the fix"})
    after = Job.objects.get(id=job.id)
    assert (after.attempts, after.run_at) == (0, job.run_at)


def test_reschedule_form__a_date_in_the_browsers_format_is_refused_in_words(login_as, jobs):
    client = login_as("operator", "op")
    job = jobs.scheduled()
    form = {"action": "reschedule", "ids": [job.id], "has_options": "1"}
    form["run_at"] = "31/01/2031 09:30"
    response = client.post(ACTIONS, form)
    assert response.status_code == 400
    assert "ISO 8601 in UTC (YYYY-MM-DDTHH:MM:SSZ)" in _words(response)


def test_lock_age_sort__the_api_refuses_it_outside_locked_jobs_and_sorts_with_it(
    client, jobs, django_user_model
):
    from tests.test_api import user_with_token

    ids = [jobs.locked(by=f"w{m}", age=f"{m} minutes").id for m in (5, 50, 20)]
    auth = {"Authorization": f"Bearer {user_with_token(django_user_model, 'viewer', 'v')[1]}"}
    refused = client.get("/api/jobs", {"sort": "lock_age"}, headers=auth)
    assert refused.status_code == 400
    assert "lock age sort orders locked jobs only" in refused.json()["detail"]
    listed = client.get("/api/jobs", {"sort": "lock_age", "state": "locked"}, headers=auth)
    assert listed.status_code == 200, listed.content
    assert [job["id"] for job in listed.json()["jobs"]] == [ids[1], ids[2], ids[0]]
