"""Run the real graphile-worker npm package from tests.

The conformance tests compare our installer with what the real package installs and run a real
Node worker against our schema. The package is pinned in tests/node/package-lock.json and installed
with `npm ci` on first use (node_modules is not committed).

Older releases (for databases that 0.16.x or 0.17.x installed and 0.18.0 upgraded) live in
tests/node-versions/<version>/, each with its own package-lock.json, installed the same way; pass
`version=` to the helpers below to use one of them.
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
VERSIONS_DIR = Path(__file__).resolve().parent / "node-versions"
OLDER_VERSIONS = ("0.16.6", "0.17.3")  # each pinned in VERSIONS_DIR/<version>/package-lock.json
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


def ensure_graphile_worker(version: str | None = None) -> Path:
    """Install the pinned package with `npm ci` when needed and return the CLI's path.

    `npm ci` installs exactly what the lock file says. A file lock keeps parallel test processes
    from running it at the same time in the same directory. `version` picks one of
    OLDER_VERSIONS instead of the 0.18.0 in tests/node.
    """
    require_node()  # the callers run Node, not only npm
    node_dir = _node_dir(version)
    cli = node_dir / "node_modules" / ".bin" / "graphile-worker"
    package = node_dir / "node_modules" / "graphile-worker"
    npm_ci_unless(lambda: cli.exists() and package.is_dir(), node_dir=node_dir)
    return cli


def npm_ci_unless(installed, *, node_dir: Path = NODE_DIR) -> None:
    """Run `npm ci` in `node_dir` (tests/node) unless `installed()` already holds (checked
    again under the lock, so parallel test processes install once)."""
    if installed():
        return
    require_node()
    with _npm_lock(node_dir):
        if installed():
            return
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=node_dir,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {node_dir}:\n{result.stdout}\n{result.stderr}")


def install_real_schema(database_url: str, schema: str, *, version: str | None = None) -> None:
    """Install (or upgrade to) the real graphile-worker schema in `schema` (`--schema-only`).

    The CLI takes the schema as `--schema` (it also reads env GRAPHILE_WORKER_SCHEMA, which is set
    to the same value so an inherited variable cannot point it elsewhere). `version`: one of
    OLDER_VERSIONS instead of 0.18.0.
    """
    run_graphile_worker(database_url, schema, ["--schema-only"], version=version)


def run_graphile_worker(
    database_url: str,
    schema: str,
    args: list[str],
    *,
    cwd: Path | None = None,
    version: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against a database; fail the test with its output when it fails.

    `cwd` matters for a worker run: the CLI loads ./tasks and ./crontab from it. By default it
    runs in the package's folder, where neither exists and no graphile.config file can be
    picked up.
    """
    cli = ensure_graphile_worker(version)
    env = {**os.environ, "GRAPHILE_WORKER_SCHEMA": schema, "DATABASE_URL": database_url}
    result = subprocess.run(
        [str(cli), "--connection", database_url, "--schema", schema, *args],
        cwd=cwd or _node_dir(version),
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


def _node_dir(version: str | None) -> Path:
    if version is None:
        return NODE_DIR
    if version not in OLDER_VERSIONS:
        raise ValueError(f"no pinned graphile-worker {version}; choose from {OLDER_VERSIONS}")
    return VERSIONS_DIR / version


@contextlib.contextmanager
def _npm_lock(node_dir: Path) -> Iterator[None]:
    digest = hashlib.sha256(str(node_dir).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"graphile-console-npm-{digest}.lock"
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
