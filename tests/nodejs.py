"""Run the real graphile-worker npm package from tests.

The conformance tests compare our installer with what the real package installs and run a real
Node worker against our schema. The package is pinned in tests/node/package-lock.json and installed
with `npm ci` on first use (node_modules is not committed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
PACKAGE_DIR = NODE_DIR / "node_modules" / "graphile-worker"
CLI = NODE_DIR / "node_modules" / ".bin" / "graphile-worker"
NPM_CI_TIMEOUT = 600
CLI_TIMEOUT = 120


def require_node() -> None:
    """Skip the test when Node.js or npm is missing, but fail on CI.

    On a developer machine without Node the conformance tests cannot run and say so; on CI
    (env var CI set) a missing Node must not turn the proof into a silent skip.
    """
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not found on PATH; the real graphile-worker cannot run"
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set, so this is an error, not a skip)")
    pytest.skip(reason)


def ensure_graphile_worker() -> Path:
    """Install the pinned package with `npm ci` when needed and return the CLI's path.

    `npm ci` installs exactly what the lock file says. A file lock keeps parallel test processes
    from running it at the same time in the same directory.
    """
    require_node()  # the callers run Node, not only npm
    npm_ci_unless(lambda: CLI.exists() and PACKAGE_DIR.is_dir())
    return CLI


def npm_ci_unless(installed) -> None:
    """Run `npm ci` in tests/node unless `installed()` already holds (checked again under the
    lock, so parallel test processes install once)."""
    if installed():
        return
    require_node()
    with _npm_lock():
        if installed():
            return
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_DIR}:\n{result.stdout}\n{result.stderr}")


def install_real_schema(database_url: str, schema: str) -> None:
    """Install the real graphile-worker schema into `schema` (`graphile-worker --schema-only`).

    The CLI takes the schema as `--schema` (it also reads env GRAPHILE_WORKER_SCHEMA, which is set
    to the same value so an inherited variable cannot point it elsewhere).
    """
    run_graphile_worker(database_url, schema, ["--schema-only"])


def run_graphile_worker(
    database_url: str,
    schema: str,
    args: list[str],
    *,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against a database; fail the test with its output when it fails.

    `cwd` matters for a worker run: the CLI loads ./tasks and ./crontab from it. By default it
    runs in tests/node, where neither exists and no graphile.config file can be picked up.
    """
    cli = ensure_graphile_worker()
    env = {**os.environ, "GRAPHILE_WORKER_SCHEMA": schema, "DATABASE_URL": database_url}
    result = subprocess.run(
        [str(cli), "--connection", database_url, "--schema", schema, *args],
        cwd=cwd or NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"graphile-worker {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def postgres_url(params: Mapping[str, str]) -> str:
    """Build a postgresql:// URL from libpq parameters (node-postgres only understands URLs)."""
    params = dict(params)
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = quote(params.pop("dbname", ""), safe="")
    auth = f"{user}:{quote(password, safe='')}@" if password is not None else f"{user}@"
    if host.startswith("/"):  # a Unix-socket directory, percent-encoded as node-postgres expects
        host = quote(host, safe="")
    elif ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = f"{auth if user or password else ''}{host}{':' + port if port else ''}"
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{netloc}/{dbname}{query}"


@contextlib.contextmanager
def _npm_lock() -> Iterator[None]:
    digest = hashlib.sha256(str(NODE_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"graphile-console-npm-{digest}.lock"
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
