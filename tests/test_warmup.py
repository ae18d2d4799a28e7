"""A server process compiles every template and reads the schema's capabilities before its
first request (dashboard/warmup.py, gunicorn's post_worker_init)."""

from __future__ import annotations

import logging

from django.template import engines

from dashboard import warmup
from worker_admin import schema


def _loader():
    """Django's cached loader (DEBUG off), inside template_partials' own."""
    loader = engines["django"].engine.template_loaders[0]
    while not hasattr(loader, "get_template_cache"):
        loader = loader.loaders[0]
    return loader


def test_warm_up__every_template_compiled_and_the_schema_read(transactional_db):
    _loader().reset()
    schema.clear_capabilities_cache()
    warmup.warm()
    names = warmup.template_names()
    assert "worker_admin/overview.html" in names and "base.html" in names
    assert set(names) <= set(_loader().get_template_cache)
    assert schema._cache, "the capability check was not cached"


def test_warm_up__a_database_that_is_away_is_logged_not_raised(
    transactional_db, monkeypatch, caplog
):
    def away():
        raise OSError("connection refused")

    monkeypatch.setattr(warmup, "_check_schema", away)
    with caplog.at_level(logging.WARNING, logger="dashboard.warmup"):
        warmup.warm()
    assert "Could not read the worker schema while warming up" in caplog.text
