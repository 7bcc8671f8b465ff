"""Fixtures of the web service's tests; the helpers are in tests/support/web.py."""

from __future__ import annotations

import pytest

from tests.support.web import LiveLink, WebProcess


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
