"""What the account tests share: the admin site's forms as a browser posts them (CSRF included)
and every account row as plain values, to compare before and after."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from worker_admin.api.tokens import ApiToken

PASSWORD = "pw-123456789"
NEW_PASSWORD = "a-much-longer-new-secret-42"


def signed_in(user) -> Client:
    """A browser session: CSRF enforced, as a real form post is."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def post(client: Client, url: str, data: dict):
    page = client.get("/django-admin/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    return client.post(url, {**data, "csrfmiddlewaretoken": token})


def change_form(user, **changes) -> dict:
    """What the user change form sends for `user`, with `changes` on top."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "groups": [group.pk for group in user.groups.all()],
    }
    for flag in ("is_active", "is_staff", "is_superuser"):
        if getattr(user, flag):
            data[flag] = "on"
    return {**data, **changes}


def accounts() -> dict:
    """Every account row the admin site could change, as plain values."""
    return {
        "users": sorted(
            get_user_model().objects.values_list(
                "username", "password", "is_active", "is_staff", "is_superuser", "first_name"
            )
        ),
        "memberships": sorted(
            get_user_model().groups.through.objects.values_list("user_id", "group_id")
        ),
        "user_permissions": sorted(
            get_user_model().user_permissions.through.objects.values_list(
                "user_id", "permission_id"
            )
        ),
        "groups": sorted(Group.objects.values_list("name", flat=True)),
        "group_permissions": sorted(
            Group.permissions.through.objects.values_list("group_id", "permission_id")
        ),
        "tokens": sorted(ApiToken.objects.values_list("name", "user_id", "revoked_at")),
    }


# Each kind of write the admin site takes: (url, form data), from the fixtures.
def writes(alice, oncall, token) -> dict:
    act_on_jobs = Permission.objects.get(codename="act_on_jobs")
    return {
        "user_add": (
            "/django-admin/auth/user/add/",
            {
                "username": "mallory",
                "usable_password": "true",
                "password1": NEW_PASSWORD,
                "password2": NEW_PASSWORD,
            },
        ),
        "user_change": (
            f"/django-admin/auth/user/{alice.pk}/change/",
            change_form(
                alice,
                is_staff="on",
                is_superuser="on",
                groups=[Group.objects.get(name="admin").pk],
            ),
        ),
        "user_password": (
            f"/django-admin/auth/user/{alice.pk}/password/",
            {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        ),
        "user_delete": (f"/django-admin/auth/user/{alice.pk}/delete/", {"post": "yes"}),
        "user_delete_action": (
            "/django-admin/auth/user/",
            {"action": "delete_selected", "_selected_action": [alice.pk], "post": "yes"},
        ),
        "group_add": ("/django-admin/auth/group/add/", {"name": "intruders"}),
        "group_change": (
            f"/django-admin/auth/group/{oncall.pk}/change/",
            {"name": "night shift", "permissions": [act_on_jobs.pk]},
        ),
        "group_delete": (f"/django-admin/auth/group/{oncall.pk}/delete/", {"post": "yes"}),
        "token_add": (
            "/django-admin/worker_admin/apitoken/add/",
            {"name": "sneaky", "user": alice.pk},
        ),
        "token_revoke": (
            "/django-admin/worker_admin/apitoken/",
            {"action": "revoke_selected", "_selected_action": [token.pk]},
        ),
        "own_password": (
            "/django-admin/password_change/",
            {
                "old_password": PASSWORD,
                "new_password1": NEW_PASSWORD,
                "new_password2": NEW_PASSWORD,
            },
        ),
    }


KINDS = [
    "user_add",
    "user_change",
    "user_password",
    "user_delete",
    "user_delete_action",
    "group_add",
    "group_change",
    "group_delete",
    "token_add",
    "token_revoke",
    "own_password",
]
