"""Make `python3 manage.py …` work on a machine that has nothing but Python.

This module imports only the standard library: it runs before Django is installed. It
 1. creates `.venv` and installs the project into it when Django cannot be imported, or when
    pyproject.toml changed since the last install into that `.venv`, then re-executes manage.py
    with the virtual environment's interpreter;
 2. runs `runtests` as pytest in a child process, on the embedded test cluster when neither
    DATABASE_URL nor TEST_DATABASE_URL is set, and stops that cluster when pytest ends;
 3. without DATABASE_URL, points every other command at the embedded demo cluster (`demo`
    creates it; the others need it to exist), starting it for the command's duration when it is
    not running, and says so in one line on stderr. `--help` starts nothing.

`--keep-db` (or EMBEDDED_PG_KEEP=1) leaves a server this command started running afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed-pyproject"
KEEP_FLAG = "--keep-db"
HELP_FLAGS = {"-h", "--help"}
# Commands that print something about Django itself and never touch a database.
NO_DATABASE = {"", "help", "version", "--version", *HELP_FLAGS}
NO_EMBEDDED_DATABASE_YET = (
    "DATABASE_URL is not set and there is no embedded database yet: run "
    "`python3 manage.py demo` once, or set DATABASE_URL to your Graphile Worker database."
)


def prepare(argv: list[str]) -> None:
    _ensure_virtualenv(argv)
    command = argv[1] if len(argv) > 1 else ""
    keep = _take_keep_flag(argv)
    if command == "runtests":
        sys.exit(_run_tests(argv[2:], keep=keep))
    if command == "demo":
        os.environ.setdefault("CONSOLE_DEMO", "1")
    if os.environ.get("DATABASE_URL"):
        return
    from dashboard import embedded

    os.environ["CONSOLE_EMBEDDED"] = "1"
    if command in NO_DATABASE or HELP_FLAGS & set(argv[2:]):
        os.environ["DATABASE_URL"] = embedded.placeholder_conninfo()
        return
    if command != "demo" and not embedded.is_initialised():
        sys.exit(f"manage.py {command}: {NO_EMBEDDED_DATABASE_YET}")
    used = embedded.acquire(keep=keep)
    print(embedded.describe(used), file=sys.stderr)
    os.environ["DATABASE_URL"] = used.conninfo
    # The demo shows two worker databases (`demo` creates the second on the same server).
    os.environ.setdefault("GRAPHILE_WORKER_DATABASES", embedded.demo_databases(used.conninfo))


def _take_keep_flag(argv: list[str]) -> bool:
    """--keep-db is the bootstrap's, not the command's: taken out before Django parses argv."""
    keep = KEEP_FLAG in argv[2:]
    if keep:
        argv.remove(KEEP_FLAG)
    return keep or os.environ.get("EMBEDDED_PG_KEEP", "").lower() in {"1", "true", "yes", "on"}


def _run_tests(args: list[str], *, keep: bool) -> int:
    # pytest, not Django's test runner: the suite is pytest-django's.
    os.chdir(ROOT)
    env = dict(os.environ)
    if env.get("TEST_DATABASE_URL"):
        env["DATABASE_URL"] = env["TEST_DATABASE_URL"]
    if not env.get("DATABASE_URL"):
        from dashboard import embedded

        if HELP_FLAGS & set(args):
            env["DATABASE_URL"] = embedded.placeholder_conninfo(embedded.TEST_DATA_DIR)
        else:
            used = embedded.acquire(embedded.TEST_DATA_DIR, keep=keep, tests=True)
            print(embedded.describe(used), file=sys.stderr)
            env["DATABASE_URL"] = used.conninfo
    return _supervise([sys.executable, "-m", "pytest", *_parallel(args), *args], env)


def _parallel(args: list[str]) -> list[str]:
    """pytest-xdist, one worker per core (up to 4), whole files per worker (their module
    fixtures are set up once), unless the caller chose (-n, -p no:xdist) or asked for help."""
    cores = min(os.cpu_count() or 1, 4)
    chosen = any(arg.startswith(("-n", "--numprocesses", "--dist")) for arg in args)
    if cores < 2 or chosen or "no:xdist" in args or HELP_FLAGS & set(args):
        return []
    return ["-n", str(cores), "--dist", "loadfile"]


def _supervise(command: list[str], env: dict[str, str]) -> int:
    """Run the child to its end, whatever signal arrives, so that this process (which stops the
    embedded server at exit) outlives it. Ctrl-C reaches the child from the terminal itself;
    SIGTERM and SIGHUP are passed on."""
    child = subprocess.Popen(command, env=env)

    def pass_on(signum: int, frame) -> None:
        if signum != signal.SIGINT:
            child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, pass_on)
    code = child.wait()
    return 128 - code if code < 0 else code


def _pyproject_digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def _in_project_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _ensure_virtualenv(argv: list[str]) -> None:
    if _in_project_venv():
        if not STAMP.exists() or STAMP.read_text() != _pyproject_digest():
            _install_into_venv()
            # Start again so the fresh install's .pth files (editable install) are read.
            os.execv(sys.executable, [sys.executable, *argv])
        return
    if importlib.util.find_spec("django") is not None:
        return  # the caller's own environment already has what we need
    if not (VENV / "bin" / "python").exists():
        print(f"Creating a virtual environment in {VENV} …", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(VENV / "bin" / "python")
    os.execv(python, [python, *argv])


def _install_into_venv() -> None:
    print("Installing the console and its dependencies into .venv …", file=sys.stderr)
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(_pyproject_digest())
