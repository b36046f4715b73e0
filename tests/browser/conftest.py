"""Headless Chromium (Debian's, installed by scripts/test-setup.sh) driven by Playwright."""

import os
from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page(live_server, monkeypatch):
    """A fresh page of a fresh headless Chromium; yields (page, base_url)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test-setup.sh (apt-get install chromium)")
    # Playwright's sync API keeps an asyncio loop in this thread; the test's own ORM calls
    # are plain synchronous code, which Django would otherwise refuse in that context.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        context = browser.new_context(
            viewport={"width": 1440, "height": 900}, accept_downloads=True
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        try:
            yield page, live_server.url
        finally:
            context.close()
            browser.close()
            # Queries the test ran while Playwright's loop was active opened their own
            # connection; close it so the test database can be dropped at the end.
            connections.close_all()


@pytest.fixture
def screenshot(tmp_path):
    """screenshot(page, name): a PNG of the viewport. Into docs/screenshots/ (committed, shown
    in the README) when TRACELEDGER_SCREENSHOTS=1 (``make screenshots``), else into the
    test's temporary directory, so that ``make test`` leaves the working tree clean."""
    directory = SCREENSHOTS if os.environ.get("TRACELEDGER_SCREENSHOTS") == "1" else tmp_path

    def take(page, name: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        return path

    return take
