"""Redaction of payload fields by path: what every page shows instead of a secret.

REDACT_PAYLOAD_PATHS lists the fields, comma-separated; each path is keys joined by dots:

    password              the top-level key "password"
    card.number           "number" inside the top-level object "card"
    *.token               "token" one level down, under any key
    **.token              "token" at any depth, the top level included
    headers.authorization keys compare case-insensitively ("Authorization" matches)

A list is looked through: `users.password` redacts the password of every element of a `users`
list. `*` stands for exactly one key; `**` for any number of levels (none included). A redacted
value, whatever its type, is shown as the string REDACTED.

The stored payload is never changed: redaction applies only where a payload is shown (job
detail, audit exports). Operators and admins can reveal one job's whole payload; that is
audited (worker_admin/views/reveal.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings

REDACTED = "[redacted]"
ANY_KEY = "*"
ANY_DEPTH = "**"


def parse_paths(text: str | Iterable[str]) -> list[tuple[str, ...]]:
    """Split configured paths into lower-cased segments; a malformed path raises ValueError
    with one sentence naming it."""
    items = text.split(",") if isinstance(text, str) else list(text)
    paths = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        segments = tuple(segment.strip().lower() for segment in item.split("."))
        if any(not segment for segment in segments):
            raise ValueError(f"“{item}” is not a payload path: a dot needs a key on each side.")
        if segments[-1] in (ANY_KEY, ANY_DEPTH):
            raise ValueError(f"“{item}” is not a payload path: it must end with a key name.")
        paths.append(segments)
    return paths


def configured_paths() -> list[tuple[str, ...]]:
    return parse_paths(getattr(settings, "REDACT_PAYLOAD_PATHS", []))


def redact(payload: Any, paths: Sequence[str] | None = None) -> tuple[Any, list[str]]:
    """A copy of `payload` with the configured fields replaced by REDACTED, and the dotted
    paths of the fields replaced (list indexes included, e.g. `users.0.password`), in the
    order found. `paths` overrides REDACT_PAYLOAD_PATHS. The payload itself is not changed."""
    patterns = parse_paths(paths) if paths is not None else configured_paths()
    if not patterns:
        return payload, []
    copied = copy.deepcopy(payload)
    found: list[str] = []
    for pattern in patterns:
        _apply(copied, pattern, (), found)
    return copied, found


def is_configured() -> bool:
    return bool(configured_paths())


def redact_parameters(parameters: Any) -> Any:
    """An audit entry's parameters as shown: the payload an add kept there is redacted. A
    payload kept as text (a rejected add's input) is parsed first; text that is not JSON is
    withheld whole while redaction is on, since its fields cannot be found."""
    if not isinstance(parameters, dict) or "payload" not in parameters or not is_configured():
        return parameters
    shown = dict(parameters)
    value = parameters["payload"]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            shown["payload"] = REDACTED
            return shown
    shown["payload"], _ = redact(value)
    return shown


def may_reveal(user) -> bool:
    """Operators and admins may reveal a redacted payload (audited); viewers never."""
    return bool(user and user.is_authenticated and user.has_perm("worker_admin.act_on_jobs"))


def _apply(node: Any, pattern: tuple[str, ...], where: tuple[str, ...], found: list[str]) -> None:
    if not pattern:
        return
    if isinstance(node, list):  # lists are looked through, element by element
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                _apply(item, pattern, (*where, str(index)), found)
        return
    if not isinstance(node, dict):
        return
    head, rest = pattern[0], pattern[1:]
    if head == ANY_DEPTH:
        _apply(node, rest, where, found)  # zero levels
        for key, value in node.items():
            if isinstance(value, dict | list):
                _apply(value, pattern, (*where, key), found)  # one more level, still `**`
        return
    for key in list(node):
        if head != ANY_KEY and key.lower() != head:
            continue
        if rest:
            _apply(node[key], rest, (*where, key), found)
        elif node[key] != REDACTED:
            node[key] = REDACTED
            found.append(".".join((*where, key)))
