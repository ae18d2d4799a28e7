"""The `graphile-console` console script (placeholder until the entry point lands)."""

from __future__ import annotations


def main() -> int:  # pragma: no cover - replaced in the next commit
    raise SystemExit("graphile-console: not yet available; use manage.py graphile_worker.")
