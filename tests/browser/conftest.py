"""Playwright driving Debian's Chromium against Django's live test server.

Screenshots go to ``test-artifacts/screenshots/`` (kept by CI as the walk's evidence).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    # Playwright's sync API runs an event loop; Django must allow sync DB calls in the test thread.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make test` (it installs Debian's chromium).")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, settings):
    settings.PROTONPATH_BASE_URL = live_server.url
    context = browser.new_context(base_url=live_server.url, locale="en-GB", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot(page, request):
    """``screenshot("step-name")`` saves a full-page PNG named after the test and the step."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    counter = {"n": 0}

    def take(step: str) -> Path:
        counter["n"] += 1
        path = ARTIFACTS / f"{request.node.name}-{counter['n']:02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def login(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.wait_for_load_state("networkidle")


def wait_for(page, expression: str, timeout_s: float = 15.0) -> None:
    """Wait until ``expression`` is true in the page. Playwright's wait_for_function evaluates its
    predicate with eval() inside the page, which the Content-Security-Policy forbids (as it
    should); page.evaluate goes through the DevTools protocol and is not affected."""
    import time

    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s} s: {expression}")
        page.wait_for_timeout(50)


@contextlib.contextmanager
def task_worker(settings):
    """A real ``db_worker`` process on the test database (plans run there, never in a request),
    stopped on leaving the block."""
    from tests.treatment.test_workers import REPO, database_url

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    env = {**os.environ, "DATABASE_URL": database_url(), "PROTONPATH_MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "TASKS_BACKEND": "django_tasks_db.DatabaseBackend", "NUMBA_THREADING_LAYER": "workqueue"}
    worker = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "db_worker", "--no-startup-delay",
                               "--interval", "0.2", "--no-reload", "-v", "0"], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(15)
