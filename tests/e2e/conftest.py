"""Browser tests: Debian's Chromium (/usr/bin/chromium) driven by Playwright against pytest-django's live server.

Every test in this folder is marked `browser`. Without Chromium or the playwright package such a test is
skipped, unless REQUIRE_SERVICES=1 (as in CI), where it fails and says what is missing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from tests.conftest import services_required

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
E2E_DIR = Path(__file__).resolve().parent
ARTIFACTS = E2E_DIR.parent.parent / "test-artifacts"
TIMEOUT_MS = 20_000


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "browser: needs Chromium at /usr/bin/chromium and the playwright package "
        "(skips without them; fails under REQUIRE_SERVICES=1)",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


def browser_problem() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing (pip install the dev extras)."
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium is missing: no executable at {CHROMIUM} (apt-get install chromium)."
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("browser") is None:
        return
    problem = browser_problem()
    if problem is None:
        return
    if services_required():
        pytest.fail(f"REQUIRE_SERVICES=1 but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per module.

    Playwright's sync API keeps an asyncio loop marked as running in this thread while it is open, and
    Django refuses ORM calls under a running loop; the tests' own ORM calls are synchronous, so they are
    allowed for as long as the browser is open, and the setting is restored when it closes.
    """
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def live(live_server, settings):
    """The live server's base URL, its host allowed."""
    from urllib.parse import urlsplit

    host = urlsplit(live_server.url).hostname
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, host]
    return live_server.url


@pytest.fixture
def page(chromium, live):
    """A fresh browser window (its own cookies), English first, with a generous timeout."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ at the top of the project (git-ignored): the screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
