"""Bearer-token authentication. Reads take any live token; writes also check the token user's
role before the body is read, so a viewer's write is 403 whatever it sends (and audited)."""

from __future__ import annotations

from ninja.errors import HttpError
from ninja.security import HttpBearer

from worker_admin import databases
from worker_admin.api import tokens
from worker_admin.api.common import refuse, write_action, write_permission


class BearerToken(HttpBearer):
    """An API token (worker_admin/api/tokens.py); the request then acts as the token's user."""

    def authenticate(self, request, token: str):
        found = tokens.authenticate(token.strip())
        if found is None:
            return None
        request.user = found.user
        request.api_token = found
        database = databases.current()
        if not databases.may_open(found.user, database):
            raise HttpError(
                403,
                f"The worker database {database.name!r} is open to members of "
                f"{', '.join(database.groups)} only; this token's user is not one.",
            )
        return found.user


class WriterToken(BearerToken):
    """A token whose user may write: act on jobs, or with `maintenance`, run maintenance."""

    def __init__(self, *, maintenance: bool = False) -> None:
        self.maintenance = maintenance
        super().__init__()

    def authenticate(self, request, token: str):
        user = super().authenticate(request, token)
        if user is None:
            return None
        request.auth = user
        refusal = write_permission(request, maintenance=self.maintenance)
        if refusal is not None:
            refuse(request, write_action(request), refusal)
            raise HttpError(refusal.status, refusal.message)
        return user
