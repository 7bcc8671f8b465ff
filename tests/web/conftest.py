"""Fixtures of the web service's tests; the helpers are in tests/support/web.py."""

from __future__ import annotations

import pytest

from tests.support.web import CHROMIUM, LiveLink, WebProcess


@pytest.fixture
def live_link():
    link = LiveLink()
    yield link
    link.close()


@pytest.fixture
def web(tmp_path, live_link):
    proc = WebProcess(tmp_path / "reports", live_link.spec).start()
    yield proc
    if proc.proc and proc.proc.poll() is None:
        proc.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (no browser download: executable_path)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Debian's chromium is not installed (scripts/setup.sh installs it)"
    with sync_playwright() as p:
        # --no-sandbox: the suite runs as root in CI, where Chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()
