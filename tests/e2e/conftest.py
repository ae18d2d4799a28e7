"""Browser tests: Playwright's Python package driving Debian's Chromium.

Playwright's own browser download cannot work here, so the tests launch /usr/bin/chromium (or
CHROMIUM_PATH). Without it they skip locally and fail under CI, which installs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop


def _chromium() -> str | None:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).exists() else None


@pytest.fixture(scope="session")
def browser():
    executable = _chromium()
    if executable is None:
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    """screenshot("name"): the fixture page, whole, to artifacts/screenshots/name.png."""

    def take(name: str) -> Path:
        return save_screenshot(page, name)

    return take


# -- shared helpers for the flow, hostile-content and accessibility tests ----------------------

WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def console_user(worker_rows, django_user_model):
    """make("olivia", "operator") -> (username, password): a login with one role."""
    from django.contrib.auth.models import Group

    from worker_admin.roles import ensure_groups

    ensure_groups()  # an earlier transactional test flushed the migration's groups

    def make(username: str, role: str) -> tuple[str, str]:
        password = f"{username}-password-1"
        user = django_user_model.objects.create_user(username, password=password)
        user.groups.add(Group.objects.get(name=role))
        return username, password

    return make


def log_in(page, base: str, credentials: tuple[str, str]) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("User name").fill(credentials[0])
    page.get_by_label("Password").fill(credentials[1])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)


def new_page(browser, *, viewport=WIDE, color_scheme="light", bypass_csp=False):
    context = browser.new_context(
        viewport=viewport, color_scheme=color_scheme, bypass_csp=bypass_csp
    )
    return context.new_page()


def save_screenshot(page, name: str, *, docs: bool = False) -> Path:
    """artifacts/screenshots/<name>.png, the whole page (CI keeps the folder). With docs=True
    and UPDATE_DOCS_SCREENSHOTS=1 in the environment, also docs/<name>.png: the window only,
    for the README (a normal test run never rewrites tracked files)."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=False)
    return path


def horizontal_overflow(page) -> int:
    """How many pixels the page is wider than the window (0 when nothing sticks out)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


# -- axe-core, from tests/node (npm ci installs it with the pinned graphile-worker) -------------

AXE_SCRIPT = (
    Path(__file__).resolve().parents[1] / "node" / "node_modules" / "axe-core" / "axe.min.js"
)


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """The path of axe.min.js, installed by `npm ci` in tests/node when missing (a
    node_modules left from before axe-core joined package.json gets it too)."""
    from tests.nodejs import npm_ci_unless

    npm_ci_unless(AXE_SCRIPT.exists)
    return AXE_SCRIPT


def axe_violations(page, script: Path, *, impacts=("serious", "critical")) -> list[dict]:
    """Run axe-core on the page as it is now; the violations of the given impacts.

    The page's context must bypass the Content-Security-Policy (new_page(bypass_csp=True)):
    the injected axe script is exactly the kind of script the policy forbids.
    """
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(script))
    found = page.evaluate(
        """async () => (await window.axe.run(document, {
              runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                              'best-practice']},
              resultTypes: ['violations'],
           })).violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(' '),
                                                    summary: n.failureSummary}))}))"""
    )
    return [v for v in found if v["impact"] in impacts]


def describe_violations(violations: list[dict]) -> str:
    lines = []
    for v in violations:
        lines.append(f"{v['impact']}: {v['id']} ({v['help']})")
        for node in v["nodes"]:
            lines.append(f"    {node['target']}: {node['summary'].splitlines()[-1].strip()}")
    return "\n".join(lines)
