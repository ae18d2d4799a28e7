"""API tokens: one per script or integration, issued to a user by an admin.

The secret is shown once, at issue; the database keeps only its SHA-256 digest (a 256-bit random
secret needs no slow hash: there is nothing to brute-force) and a short visible prefix so a
listing can say which token is which. A token acts as its user, with the user's role.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

# "gwc_" marks a console token in logs and secret scanners; the prefix shown is the first
# characters after it, enough to tell tokens apart, far too few to guess the rest.
TOKEN_MARK = "gwc_"
VISIBLE_PREFIX_LENGTH = 8
SECRET_BYTES = 32


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'deploy bot'.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    prefix = models.CharField(max_length=VISIBLE_PREFIX_LENGTH, db_index=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="issued_api_tokens",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({TOKEN_MARK}{self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str  # the only time it exists outside the caller's hands


def new_secret(token: ApiToken) -> str:
    """Give an unsaved token a fresh secret (its prefix and digest); return the secret."""
    body = secrets.token_urlsafe(SECRET_BYTES)
    secret = TOKEN_MARK + body
    token.prefix = body[:VISIBLE_PREFIX_LENGTH]
    token.digest = digest_of(secret)
    return secret


def issue(user, *, name: str, created_by=None, via: str) -> IssuedToken:
    """A new token for `user`, audited as issued by `created_by` (a user, or a name such as
    the OS user of the command line) in the same transaction (worker_admin/account_audit.py)."""
    from worker_admin.account_audit import acting_as

    issuer = created_by if hasattr(created_by, "get_username") else None
    token = ApiToken(name=name, user=user, created_by=issuer if issuer and issuer.pk else None)
    secret = new_secret(token)
    with transaction.atomic(), acting_as(created_by, via):
        token.save()
    return IssuedToken(token=token, secret=secret)


def revoke(token: ApiToken, *, actor, via: str) -> bool:
    """Revoke, audited in the same transaction; False when it already was (revoking twice
    changes nothing, and two revokes at once revoke once: the row is locked first)."""
    from worker_admin.account_audit import acting_as

    with transaction.atomic(), acting_as(actor, via):
        locked = ApiToken.objects.select_for_update().filter(pk=token.pk).first()
        if locked is None or locked.revoked_at is not None:
            revoked = False
        else:
            locked.revoked_at = timezone.now()
            locked.save(update_fields=["revoked_at"])
            revoked = True
        if locked is not None:
            token.revoked_at = locked.revoked_at
    return revoked


def authenticate(secret: str) -> ApiToken | None:
    """The live token for a presented secret, or None (unknown, revoked, or inactive user)."""
    if not secret or not secret.startswith(TOKEN_MARK) or len(secret) > 200:
        return None
    token = (
        ApiToken.objects.active().select_related("user").filter(digest=digest_of(secret)).first()
    )
    if token is None or not token.user.is_active:
        return None
    # One small write per request; skip it when the last one is recent.
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
