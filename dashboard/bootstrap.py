"""Make `python3 manage.py …` work on a machine that has nothing but Python.

This module imports only the standard library: it runs before Django is installed. It
 1. creates `.venv` and installs the project into it when Django cannot be imported, or when
    pyproject.toml changed since the last install into that `.venv`, then re-executes manage.py
    with the virtual environment's interpreter;
 2. runs `runtests` as pytest (tests/settings.py starts the embedded PostgreSQL when
    DATABASE_URL is not set);
 3. for `demo`, starts the embedded PostgreSQL when DATABASE_URL is not set, and exports its
    URL for the rest of the process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".installed-pyproject"


def prepare(argv: list[str]) -> None:
    _ensure_virtualenv(argv)
    command = argv[1] if len(argv) > 1 else ""
    if command == "runtests":
        # pytest, not Django's test runner: the suite is pytest-django's. Exec so that
        # pytest's exit code is the command's exit code.
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *argv[2:]])
    if command == "demo":
        os.environ.setdefault("CONSOLE_DEMO", "1")
        if not os.environ.get("DATABASE_URL"):
            from dashboard.embedded import start_embedded_postgres

            os.environ["DATABASE_URL"] = start_embedded_postgres()


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
