"""Django's admin site (/django-admin/): users, groups (the roles) and API tokens.

- READ_ONLY: every registered model, Django's and django-axes' included, is view-only and has
  no actions (worker_admin/admin_site.py refuses a forged POST before its view runs).
- Granting needs a superuser: a console admin who is not one sees is_superuser, is_staff and
  user permissions read-only, may not change, delete or set the password of a superuser, and a
  forged form that tries either is refused with a sentence and audited as rejected.
- API tokens: creating one shows its secret once, in a message; the list shows its visible
  prefix, never its digest. A token is never edited or deleted here, only revoked (an action),
  so the list stays a record of every token issued.

Every change made here is audited by worker_admin/account_audit.py, with before -> after.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.utils.html import format_html

from worker_admin.admin_site import refuse
from worker_admin.api import tokens
from worker_admin.api.tokens import TOKEN_MARK, ApiToken
from worker_admin.roles import may_manage_users, role_of

# What only a superuser may give: each makes its holder more than a console admin.
SUPERUSER_GRANTS = ("is_superuser", "is_staff", "user_permissions")


def _is_console_admin(request) -> bool:
    return may_manage_users(request.user)


class ReadOnlyAware:
    """Under READ_ONLY the model is view-only: no add, change or delete, and no actions."""

    def has_add_permission(self, request, *args) -> bool:
        return not settings.READ_ONLY and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        return not settings.READ_ONLY and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return not settings.READ_ONLY and super().has_delete_permission(request, obj)

    def get_actions(self, request):
        return {} if settings.READ_ONLY else super().get_actions(request)


# -- users and groups -----------------------------------------------------------------------------


class ConsoleUserAdmin(ReadOnlyAware, UserAdmin):
    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        return fields if request.user.is_superuser else fields + SUPERUSER_GRANTS

    def _guards_a_superuser(self, request, obj) -> bool:
        return obj is not None and obj.is_superuser and not request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        if self._guards_a_superuser(request, obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if self._guards_a_superuser(request, obj):
            return False
        return super().has_delete_permission(request, obj)

    def _refusal(self, request, object_id, action: str):
        """A POST a non-superuser may not make, in one sentence; None when it may."""
        if request.method != "POST" or request.user.is_superuser:
            return None
        target = self.get_object(request, unquote(object_id)) if object_id else None
        if target is not None and target.is_superuser:
            return refuse(
                request,
                action=action,
                sentence=f"{target.get_username()} is a superuser: only a superuser may change, "
                "delete or set the password of a superuser account. Nothing was changed.",
            )
        forged = [field for field in SUPERUSER_GRANTS if field in request.POST]
        if forged and action != "delete_user":
            return refuse(
                request,
                action=action,
                sentence=f"Only a superuser may grant {', '.join(forged)}; you are signed in as "
                f"{request.user.get_username()} with the {role_of(request.user)} role. Nothing "
                "was changed.",
            )
        return None

    def changelist_view(self, request, extra_context=None):
        """The list's actions (delete_selected) on a superuser: refused in a sentence, as the
        forms are (Django's own check would answer a bare 403)."""
        if request.method == "POST" and "action" in request.POST and not request.user.is_superuser:
            chosen = self.model._default_manager.filter(is_superuser=True)
            if request.POST.get("select_across") != "1":
                chosen = chosen.filter(pk__in=request.POST.getlist("_selected_action")[:10_000])
            names = sorted(user.get_username() for user in chosen[:5])
            if names:
                who = f"{names[0]} is a superuser" if len(names) == 1 else "some are superusers"
                return refuse(
                    request,
                    action=request.POST["action"],
                    sentence=f"{who}: only a superuser may change or delete a superuser "
                    "account. Nothing was changed.",
                )
        return super().changelist_view(request, extra_context)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        action = "change_user" if object_id else "create_user"
        refusal = self._refusal(request, object_id, action)
        return refusal or super().changeform_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        refusal = self._refusal(request, object_id, "delete_user")
        return refusal or super().delete_view(request, object_id, extra_context)

    def user_change_password(self, request, id, form_url=""):
        refusal = self._refusal(request, id, "change_user")
        return refusal or super().user_change_password(request, id, form_url)


class ConsoleGroupAdmin(ReadOnlyAware, GroupAdmin):
    pass


# -- API tokens -----------------------------------------------------------------------------------


class ApiTokenAdmin(ReadOnlyAware, admin.ModelAdmin):
    list_display = (
        "name",
        "user",
        "shown_prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    actions = ["revoke_selected"]
    autocomplete_fields = ()

    @admin.display(description="token")
    def shown_prefix(self, token: ApiToken) -> str:
        return format_html("<code>{}{}…</code>", TOKEN_MARK, token.prefix)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "user")
        return (
            "name",
            "user",
            "shown_prefix",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        )

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    def save_model(self, request, obj: ApiToken, form, change: bool) -> None:
        if change:  # every field is read-only once issued
            return
        obj.created_by = request.user
        secret = tokens.new_secret(obj)
        obj.save()  # audited as issued (account_audit), in the admin site's transaction
        messages.warning(
            request,
            f"The secret of API token “{obj.name}” for {obj.user.get_username()}, shown this "
            f"once (copy it now; only its digest is kept): {secret}",
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke_selected(self, request, queryset) -> None:
        revoked = sum(
            tokens.revoke(token, actor=request.user, via="admin")
            for token in queryset.select_related("user")
        )
        self.message_user(request, f"Revoked {revoked} token{'' if revoked == 1 else 's'}.")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # revoke instead: the list is the record
        return actions

    def has_module_permission(self, request) -> bool:
        return _is_console_admin(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return _is_console_admin(request)

    def has_add_permission(self, request) -> bool:
        return not settings.READ_ONLY and _is_console_admin(request)

    def has_change_permission(self, request, obj=None) -> bool:
        # For the revoke action; the form is read-only.
        return not settings.READ_ONLY and _is_console_admin(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


admin.site.unregister(get_user_model())
admin.site.unregister(Group)
admin.site.register(get_user_model(), ConsoleUserAdmin)
admin.site.register(Group, ConsoleGroupAdmin)
admin.site.register(ApiToken, ApiTokenAdmin)


def _make_every_admin_read_only_aware() -> None:
    """The models other apps registered (django-axes' login attempts) follow READ_ONLY too.
    Their admin modules are imported before this one (INSTALLED_APPS order)."""
    for model, model_admin in list(admin.site._registry.items()):
        if isinstance(model_admin, ReadOnlyAware):
            continue
        aware = type(type(model_admin).__name__, (ReadOnlyAware, type(model_admin)), {})
        admin.site.unregister(model)
        admin.site.register(model, aware)


_make_every_admin_read_only_aware()
