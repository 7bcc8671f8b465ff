"""The live page and the session page in a real Chromium (Debian's `chromium`, driven by
Playwright through `executable_path`), with the whole pipeline playing a sample video at
REALTIME=1 under `engagement run`. Screenshots go to artifacts/web/ (gitignored, or
WEB_ARTIFACTS) and are kept as the test's output."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from shared.config import REPO_ROOT
from shared.marks import MarkStore
from shared.ports import free_ports
from tests.support.web import REDIS_URL, Launcher, WebProcess, poll_value
from tools.sample_video import make_sample_video

ARTIFACTS = Path(os.environ.get("WEB_ARTIFACTS", REPO_ROOT / "artifacts" / "web"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Debian's chromium is not installed (scripts/setup.sh installs it)"
    with sync_playwright() as p:
        # --no-sandbox: the suite runs as root in CI, where Chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _wait_js(page, expression: str, timeout: float) -> None:
    """Poll a JavaScript condition (wait_for_function evaluates strings, which the page's CSP forbids)."""
    poll_value(lambda: page.evaluate(f"() => Boolean({expression})"), timeout, 0.1, expression)


def _pixels(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.int16)


def _cards(page) -> tuple[str, list[tuple[int, int]]]:
    return page.evaluate("""() => [document.body.dataset.seq,
        [...document.querySelectorAll('.card')].map(c => [Number(c.dataset.student), Number(c.dataset.level)])]""")


def test_live_page_then_the_finished_session_in_a_browser(tmp_path, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    video = make_sample_video(tmp_path / "class.avi", seconds=16.0, faces=2)
    report_dir = tmp_path / "reports"
    (web_port,) = free_ports(1)
    run = Launcher(str(video["path"]), report_dir, web_port)
    try:
        url = run.live_url()
        assert url == f"http://127.0.0.1:{web_port}/"
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        problems: list[str] = []  # anything the page's own code or its CSP complains about
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(url, wait_until="domcontentloaded")
        _wait_js(page, "document.querySelectorAll('.card').length >= 2", 90)
        _wait_js(page, "(document.querySelector('#videos img') || {}).naturalWidth > 0", 30)
        # Moving video: two screenshots of the picture a second and a half apart differ.
        first = page.locator("#videos img").first.screenshot()
        time.sleep(1.5)
        second = page.locator("#videos img").first.screenshot()
        (ARTIFACTS / "live-video-1.png").write_bytes(first)
        (ARTIFACTS / "live-video-2.png").write_bytes(second)
        diff = np.abs(_pixels(first) - _pixels(second)).mean()
        assert diff > 0.5, f"the video did not move (mean difference {diff:.2f})"
        page.screenshot(path=str(ARTIFACTS / "live.png"))
        # One card per student, each at the level /api/live gives for the same update.
        for _ in range(50):
            seq, cards = _cards(page)
            live = httpx.get(url + "api/live", timeout=5).json()
            if seq == str(live["seq"]):
                assert [tuple(c) for c in cards] == [(s["id"], s["level"]) for s in live["students"]]
                assert len(cards) == len(live["students"]) >= 2
                break
            time.sleep(0.1)
        else:
            pytest.fail("the page never showed the update /api/live showed")
        assert "not trained on engagement data" in page.inner_text("#model-note")
        # The teacher marks student 1 from the page.
        with page.expect_response(lambda r: r.url.endswith("/api/marks")) as answer:
            page.locator(".card[data-student='1'] .marks button[data-level='2']").click()
        assert answer.value.status == 201, answer.value.text()
        mark = answer.value.json()["mark"]
        assert mark["level_given"] == 2 and mark["level_predicted"] is not None and "yaw" in mark["signals"]
        assert problems == [], problems
        latencies = page.evaluate("window.__latencies")
        page.close()  # its streams would retry against the stopped service
        print(f"capture to page: {len(latencies)} updates, median {np.median(latencies) * 1000:.0f} ms")
        assert run.proc.wait(180) == 0, "\n".join(run.lines[-30:])
    finally:
        run.stop()
    [report_path] = list(report_dir.glob("*.json"))
    report = json.loads(report_path.read_text())
    session = report["session"]
    stored = [m for m in MarkStore(httpx_redis()).for_session(session) if m.created_at == mark["created_at"]]
    assert len(stored) == 1

    # The finished session's page, from `engagement web` on its own.
    web = WebProcess(report_dir, prefix="engagement").start()  # the prefix `engagement run` used
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        session_problems: list[str] = []
        page.on("console", lambda m: session_problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: session_problems.append(str(e)))
        page.goto(f"{web.url}/sessions")
        page.click(f"a[href='/sessions/{session}']")
        _wait_js(page, "document.body.dataset.loaded === '1'", 15)
        cells = page.locator("#timeline rect.cell").count()
        assert cells == len(report["timeline"]) > 0
        assert page.locator("#episodes tbody tr").count() >= 1
        _wait_js(page, "document.getElementById('agreement').dataset.marks === '1'", 10)
        # A mark made on the session page: a moment of the chart, then the level seen.
        page.locator("#timeline rect.cell").first.click()
        with page.expect_response(lambda r: r.url.endswith("/api/marks")) as answer:
            page.locator("#mark-levels button").nth(3).click()
        assert answer.value.status == 201 and answer.value.json()["mark"]["source"] == "session"
        _wait_js(page, "document.getElementById('agreement').dataset.marks === '2'", 10)
        page.screenshot(path=str(ARTIFACTS / "session.png"), full_page=True)
        assert session_problems == [], session_problems
        assert page.locator("#dl-csv").get_attribute("href") == f"/sessions/{session}/report.csv"
        page.goto(f"{web.url}/sessions/no-such-session")
        assert "Not found" in page.inner_text("h1")
    finally:
        web.stop()
    # The mark is in the report (the reporter writes the session's marks: issue 11, part B).
    if "marks" not in report:
        pytest.xfail("the report carries no marks yet: needs the reporter change of issue 11 part B")
    assert any(m["student"] == "1" and m["level_given"] == 2 and m["t"] == mark["t"] for m in report["marks"])


def httpx_redis():
    import redis

    return redis.Redis.from_url(REDIS_URL)


def test_thirty_students_fit_one_screen_and_follow_the_updates(tmp_path, browser, live_link):
    """A class of 30, fed on the live link at 2 updates a second: every card on one 1280x900
    screen, each at the level of the last update."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    web = WebProcess(tmp_path / "reports", live_link.spec).start()
    try:
        session = f"thirty-{int(time.time())}"
        levels = {s: 0 for s in range(1, 31)}
        poll_value(lambda: live_link.update(session, 0, levels) and
                 httpx.get(f"{web.url}/api/live").json()["session"] == session, 15, 0.2, "the first update")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(web.url + "/", wait_until="domcontentloaded")
        for seq in range(1, 11):
            levels = {s: (s + seq) % 4 for s in range(1, 31)}
            live_link.update(session, seq, levels)
            live_link.frame(session, seq)
            time.sleep(0.5)
        _wait_js(page, "document.body.dataset.seq === '10'", 10)
        _, cards = _cards(page)
        assert sorted(tuple(c) for c in cards) == sorted(levels.items())
        boxes = page.evaluate("() => [...document.querySelectorAll('.card')]"
                              ".map(c => c.getBoundingClientRect().bottom)")
        assert len(boxes) == 30 and max(boxes) <= 900, f"cards below the fold: {max(boxes):.0f} px"
        page.screenshot(path=str(ARTIFACTS / "live-30.png"))
    finally:
        web.stop()
