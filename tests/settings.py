"""Settings for the test suite: the console's settings, on a real PostgreSQL.

DATABASE_URL (or TEST_DATABASE_URL) names the server; pytest-django creates its own test
database there. Without either, the embedded PostgreSQL in .pgdata/ is started, so
`python3 manage.py runtests` works on a machine that has nothing but Python.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
if not os.environ.get("DATABASE_URL"):
    from dashboard.embedded import start_embedded_postgres

    os.environ["DATABASE_URL"] = start_embedded_postgres()

from dashboard.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
