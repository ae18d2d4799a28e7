"""Settings for the test suite: the console's settings, on a real PostgreSQL.

DATABASE_URL (or TEST_DATABASE_URL) names the server; pytest-django creates its own test
database there. Without either, the embedded test PostgreSQL in .pgdata-tests/ is used, so
`python3 manage.py runtests` works on a machine that has nothing but Python.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
if not os.environ.get("DATABASE_URL"):
    # pytest run directly (runtests has already set DATABASE_URL): this process starts the
    # embedded test cluster if needed and stops it when it ends. xdist workers inherit the URL.
    from dashboard import embedded

    os.environ["DATABASE_URL"] = embedded.acquire(embedded.TEST_DATA_DIR, tests=True).conninfo

from dashboard.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Counts are taken on each request: a snapshot shared for a few seconds would let one test see
# another's jobs (tests/test_snapshots.py and tests/test_polling.py turn it on).
SHARED_SNAPSHOT_SECONDS = 0
# Tests record history explicitly; a request finishing must not add snapshots behind their back.
HISTORY_RECORD_ON_REQUEST = False
