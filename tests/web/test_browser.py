"""The live page and the session page in a real Chromium (Debian's `chromium`, driven by
Playwright through `executable_path`), with the whole pipeline playing a sample video at
REALTIME=1 under `engagement run`. Screenshots go to artifacts/web/ (gitignored, or
WEB_ARTIFACTS) and are kept as the test's output."""

from __future__ import annotations

import json
import time

import cv2
import httpx
import numpy as np
import pytest

from shared.data.marks import MarkStore
from shared.data.report_doc import to_dict
from shared.ops.ports import free_ports
from tests.support.web import ARTIFACTS, REDIS_URL, Launcher, WebProcess, poll_value
from tests.support.web import wait_js as _wait_js
from tools.sample_video import make_sample_video


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
        page.wait_for_url(f"**/sessions/{session}", wait_until="domcontentloaded")
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


def test_two_streams_on_the_live_page_and_the_session_page(tmp_path, browser, live_link, store):
    """Two cameras of one class, fed on the live link: a video tile per stream (each its own
    picture), the cards grouped and named by stream, each stream's totals; a mark of cam1's
    #1 goes out with its stream. Then the session page of a two-stream report."""
    import threading  # noqa: PLC0415

    from services.reporter.report import build_report  # noqa: PLC0415
    from shared.data.totals import FrameRecord, Store  # noqa: PLC0415
    from tests.aggregator.harness import MODEL  # noqa: PLC0415
    from tests.support.web import jpeg  # noqa: PLC0415

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    web = WebProcess(tmp_path / "reports", live_link.spec).start()
    session = f"two-{int(time.time())}"
    levels = {"cam0": {1: 0, 2: 1}, "cam1": {1: 3, 2: 2, 3: 0}}
    stop, cam1_gone = threading.Event(), threading.Event()

    def feed():  # both cameras at 4 updates a second, as the reporter would send them
        seq = 0
        while not stop.is_set():
            per = {st: {"frames": seq + 1, "frames_without_faces": 0, "faces": len(lv), "predictions": len(lv),
                        "levels": {str(i): sum(v == i for v in lv.values()) for i in range(4)}}
                   for st, lv in levels.items()}
            for stream, background in (("cam0", 40), ("cam1", 200)):
                if stream == "cam1" and cam1_gone.is_set():
                    continue
                live_link.update(session, seq, levels[stream], stream=stream, streams=per)
                live_link.frame(session, seq, jpeg(seq, background=background), stream=stream)
            seq += 1
            time.sleep(0.25)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(web.url + "/", wait_until="domcontentloaded")
        _wait_js(page, "document.querySelectorAll('.card').length === 5", 20)
        _wait_js(page, "[...document.querySelectorAll('#videos img')].filter(i => i.naturalWidth > 0).length === 2",
                 20)
        groups = page.evaluate("""() => [...document.querySelectorAll('.stream-group')].map(g =>
            [g.dataset.stream, [...g.querySelectorAll('.card .who')].map(w => w.textContent)])""")
        assert groups == [["cam0", ["cam0 #1", "cam0 #2"]], ["cam1", ["cam1 #1", "cam1 #2", "cam1 #3"]]]
        assert page.locator(".stream-head").first.is_visible()
        # Each tile shows its own stream: cam1's frames are the bright ones.
        tiles = page.evaluate("() => [...document.querySelectorAll('#videos figure')].map(f => f.dataset.stream)")
        assert tiles == ["cam0", "cam1"]
        dark = _pixels(page.locator("#videos figure[data-stream='cam0'] img").screenshot()).mean()
        bright = _pixels(page.locator("#videos figure[data-stream='cam1'] img").screenshot()).mean()
        assert bright > dark + 80, (dark, bright)
        totals = page.locator("#stream-totals .stream-total")
        assert totals.count() == 2 and "cam1: 3 students" in totals.nth(1).inner_text()
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "live-2-streams.png"))
        tile_boxes = [page.locator(f"#videos figure[data-stream='{s}']").bounding_box() for s in ("cam0", "cam1")]
        assert tile_boxes[0]["y"] == tile_boxes[1]["y"], "the tiles are side by side"
        cards_bottom = page.evaluate("() => Math.max(...[...document.querySelectorAll('.card')]"
                                     ".map(c => c.getBoundingClientRect().bottom))")
        assert cards_bottom <= 900, f"cards below the fold: {cards_bottom:.0f} px"
        with page.expect_response(lambda r: r.url.endswith("/api/marks")) as answer:
            page.locator(".card[data-stream='cam1'][data-student='1'] .marks button[data-level='3']").click()
        assert answer.value.status == 201, answer.value.text()
        mark = answer.value.json()["mark"]
        assert (mark["stream"], mark["student"], mark["level_predicted"]) == ("cam1", "1", 3)
        # cam1's camera goes (its capture gave up): the aggregator records its end in Redis, the
        # class goes on with cam0, and the page says so on cam1's tile and row.
        cam1_gone.set()
        web_store = Store.from_url(REDIS_URL, prefix=web.prefix)
        web_store.end_stream(session, "cam1", time.time(), "gave_up", ["cam0", "cam1"])
        _wait_js(page, "document.querySelector(\"#videos figure[data-stream='cam1']\").classList.contains('ended')",
                 10)
        assert page.inner_text("#videos figure[data-stream='cam1'] .stream-name") == "cam1, ended (gave_up)"
        assert "ended (gave_up)" in page.inner_text("#stream-totals .stream-total[data-stream='cam1']")
        assert "ended" not in page.inner_text("#stream-totals .stream-total[data-stream='cam0']")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(ARTIFACTS / "live-2-streams-one-ended.png"))
        assert problems == [], problems
        page.close()
    finally:
        stop.set()
        feeder.join(5)
        web.stop()
        Store.from_url(REDIS_URL, prefix=web.prefix).delete_session(session)

    # The session page of a two-stream class, from a report built from the real Redis.
    for seq in range(8):
        for stream, lv in levels.items():
            preds = [{"student": s, "level": level, "probs": [0.25] * 4} for s, level in lv.items()]
            store.record_frame(FrameRecord(session, "c1", stream, seq, 1_700_000_000.0 + seq, seq * 0.5, len(preds),
                                           preds, MODEL))
    store.end_stream(session, "cam1", 1_700_000_008.0, "gave_up", ["cam0", "cam1"], "c1", "rtsp://cam1")
    store.end_stream(session, "cam0", 1_700_000_009.0, "end_of_file", ["cam0", "cam1"], "c1", "class.mp4")
    report_dir = tmp_path / "reports"
    report_dir.mkdir(exist_ok=True)
    (report_dir / f"{session}.json").write_text(json.dumps(to_dict(build_report(store.load_session(session)))))
    web = WebProcess(report_dir, prefix=store.prefix).start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{web.url}/sessions/{session}")
        _wait_js(page, "document.body.dataset.loaded === '1'", 15)
        rows = page.locator("#streams .stream-total")
        assert rows.count() == 2 and "gave_up" in rows.nth(1).inner_text() and "rtsp://cam1" in rows.nth(1).inner_text()
        labels = page.evaluate("() => [...document.querySelectorAll('#timeline svg > text')].map(t => t.textContent)")
        assert labels[:5] == ["cam0 #1", "cam0 #2", "cam1 #1", "cam1 #2", "cam1 #3"]
        assert "cam1 #1" in page.inner_text("#episodes")
        page.screenshot(path=str(ARTIFACTS / "session-2-streams.png"), full_page=True)
    finally:
        web.stop()


def _visibility(page, hidden: bool) -> None:
    """The tab sent to the background or brought back: headless Chromium keeps every tab visible, so the
    page's document is told it is hidden (its own visibilitychange handler then runs as in a real tab)."""
    page.evaluate(f"""() => {{ Object.defineProperty(document, 'hidden', {{configurable: true, get: () => {
        'true' if hidden else 'false'}}});
        document.dispatchEvent(new Event('visibilitychange')); }}""")


def test_a_tab_in_the_background_lets_go_of_the_video_and_takes_it_again_in_front(tmp_path, browser, live_link):
    """Nobody sees a background tab's video: the page closes it, the web says nothing is watched (so the
    reporter draws nothing); back in front the video comes again."""
    import threading  # noqa: PLC0415

    web = WebProcess(tmp_path / "reports", live_link.spec).start()
    session = f"bg-{int(time.time())}"
    stop = threading.Event()

    def feed():  # the reporter's updates and (as if watched) frames, 4 a second
        seq = 0
        while not stop.wait(0.25):
            live_link.update(session, seq, {1: seq % 4})
            live_link.frame(session, seq)
            seq += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(web.url + "/", wait_until="domcontentloaded")
        _wait_js(page, "(document.querySelector('#videos img') || {}).naturalWidth > 0", 20)
        poll_value(lambda: web.metric("engagement_web_video_watched") == 1, 10, what="the video watched")
        _visibility(page, hidden=True)
        poll_value(lambda: web.metric("engagement_web_clients", stream="video:cam0") == 0, 10,
                   what="the background tab's video closed")
        poll_value(lambda: web.metric("engagement_web_video_watched") == 0, 10, what="nothing watched")
        assert page.evaluate("() => document.querySelector('#videos img').hasAttribute('src')") is False
        _visibility(page, hidden=False)
        poll_value(lambda: web.metric("engagement_web_clients", stream="video:cam0") == 1, 10,
                   what="the video opened again")
        _wait_js(page, "document.querySelector('#videos img').naturalWidth > 0", 20)
    finally:
        stop.set()
        feeder.join(5)
        web.stop()
