"""What an operation says when it will not act: one sentence, for whichever face shows it.

A face maps these to its own format: the page shows the sentence (400), the API answers with
the status named here, the command line prints it and exits non-zero.
"""

from __future__ import annotations

from django.utils import timezone


class Refused(ValueError):
    """The request cannot be previewed or applied; nothing was changed. `status` is the HTTP
    status an API answer uses (400 bad input, 404 nothing to act on, 409 the preview no longer
    holds)."""

    status = 400

    def __init__(self, sentence: str, *, status: int | None = None) -> None:
        super().__init__(sentence)
        if status is not None:
            self.status = status


class NotFound(Refused):
    status = 404


class Stale(Refused):
    """The confirmation does not match a live preview (expired, another user's, other values)."""

    status = 409


class Expired(Stale):
    """The preview is older than its confirmation may be."""


class OtherActor(Stale):
    """The confirmation was issued to someone else."""


class Differs(Stale):
    """The values sent with the confirmation are not the ones previewed."""


class BadConfirmation(Refused):
    """Not a confirmation this server issued."""

    status = 400


class AlreadyUsed(Stale):
    """Another request already acted on this confirmation; `entry` is its first audit entry
    (None if it failed before any entry was written)."""

    def __init__(self, entry) -> None:
        if entry is None:
            sentence = "This confirmation was already used: nothing was done again."
        else:
            when = timezone.localtime(entry.created_at).strftime("%Y-%m-%d %H:%M:%S %Z")
            sentence = (
                f"This confirmation was already used: the action ran once, at {when} (audit "
                f"entry #{entry.pk}, {entry.outcome}). Nothing was done again."
            )
        super().__init__(sentence)
        self.entry = entry
