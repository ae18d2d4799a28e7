"""Django's admin site (/django-admin/): API tokens, for console admins.

Creating a token shows its secret once, in a message; the list shows its visible prefix, never
its digest. A token is never edited or deleted here, only revoked (an action), so the list stays
a record of every token issued. Issue and revoke are audited.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from worker_admin.api import tokens
from worker_admin.api.tokens import TOKEN_MARK, ApiToken
from worker_admin.audit import AuditEntry
from worker_admin.roles import may_manage_users


def _is_console_admin(request) -> bool:
    return may_manage_users(request.user)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
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
        obj.save()
        tokens.record_issue(obj, actor=request.user, via=AuditEntry.Via.WEB)
        messages.warning(
            request,
            f"The secret of API token “{obj.name}” for {obj.user.get_username()}, shown this "
            f"once (copy it now; only its digest is kept): {secret}",
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke_selected(self, request, queryset) -> None:
        revoked = sum(
            tokens.revoke(token, actor=request.user, via=AuditEntry.Via.WEB)
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
        return _is_console_admin(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return _is_console_admin(request)  # for the revoke action; the form is read-only

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
