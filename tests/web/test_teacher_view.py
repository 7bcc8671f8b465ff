"""The teacher's view (issue 25) in a real Chromium: who needs attention now, the cards' order,
names from a roster, on a real-time class from the sample video under `engagement run`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import cv2
import httpx
import numpy as np
import pytest

from services.web.attention import AttentionLog
from shared.data.report_doc import to_dict
from shared.data.report_export import report_html
from shared.ops.ports import free_ports
from tests.support.axe import axe_violations, with_axe
from tests.support.web import ARTIFACTS, Launcher, WebProcess, poll_value
from tests.support.web import wait_js as _wait_js
from tools.sample_video import make_sample_video

ALERT_SECONDS = 2.0  # short, so the sample's 4-second look-aways raise alerts


def test_an_alert_opens_after_the_threshold_and_ends_with_the_run():
    log = AttentionLog(3.0)
    for t, level in [(0, 0), (1, 2), (2, 3), (3.5, 2), (4, 2), (5, 1), (6, 2), (7, 2)]:
        log.observe("cam0", 1, float(t), level)
        if t == 3.5:
            assert log.open == {}  # 2.5 s at level 2+: not yet
        if t == 4:
            [alert] = log.current({("cam0", 1): 4.0}, 4.0)
            assert (alert.start, alert.raised, alert.seconds, alert.worst_level) == (1.0, 4.0, 3.0, 3)
    assert log.open == {} and len(log.log) == 1 and log.log[0].end == 4.0  # the run ended at 5 s
    assert log.current({("cam0", 1): 7.0}, 7.0) == []
    log.observe("cam0", 1, 9.0, 2)  # 3 s into the second run
    assert [a.start for a in log.current({("cam0", 1): 9.0}, 9.0)] == [6.0]
    assert log.current({("cam0", 1): 9.0}, 30.0) == []  # not seen for 21 s: off the strip


def _strip(page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('#attention-list li')].map(li => ({
        student: Number(li.dataset.student), text: li.textContent, seconds: Number(li.dataset.seconds)}))""")


def test_needs_attention_strip_sorting_and_names_on_a_real_class(tmp_path, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    video = make_sample_video(tmp_path / "class.avi", seconds=24.0, faces=2)
    roster = tmp_path / "roster.csv"
    roster.write_text("student,name\n1,Ada Lovelace\n2,Grace Hopper\n")
    (web_port,) = free_ports(1)
    run = Launcher(str(video["path"]), tmp_path / "reports", web_port,
                   env={"ATTENTION_ALERT_SECONDS": str(ALERT_SECONDS), "ROSTER": str(roster)})
    try:
        url = run.live_url()
        page = with_axe(browser.new_page(viewport={"width": 1200, "height": 800}))
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(url, wait_until="domcontentloaded")
        _wait_js(page, "document.querySelectorAll('.card').length >= 2", 90)
        assert "Ada Lovelace" in page.inner_text(".card[data-student='1'] .who")
        page.check("#alert-sound")  # off by default; on, a tone for each student newly listed
        page.select_option("#sort-cards", "level")
        # Student 1 of the sample turns away for about 4 s: listed once 2 s at level 2+ are over.
        seen = poll_value(lambda: [(time.time(), a) for a in _strip(page) if a["student"] == 1], 40, 0.05,
                          "student 1 in the Needs attention strip")
        shown_at, shown = seen[0]
        page.screenshot(path=str(ARTIFACTS / "live-attention.png"))
        alerts = httpx.get(url + "api/live/alerts", timeout=5).json()
        mine = [a for a in alerts["alerts"] if a["student"] == 1]
        assert alerts["attention_alert_seconds"] == ALERT_SECONDS and mine, alerts
        # REALTIME=1: capture time is wall time, so "within 2 s of crossing it" is measurable.
        delay = shown_at - mine[0]["raised"]
        print(f"alert shown {delay:.2f} s after the threshold was crossed (shared machine)")
        assert delay < 2.0, delay
        assert "Ada Lovelace" in shown["text"] and shown["seconds"] >= ALERT_SECONDS
        assert page.evaluate("window.__alertSounds") >= 1
        # Sorted by level: highest first (read in one go: every update re-sorts).
        order = page.evaluate("[...document.querySelectorAll('#cards .card')].map(c => Number(c.dataset.level))")
        assert order == sorted(order, reverse=True) and len(order) == 2, order
        assert axe_violations(page) == []  # with an alert, cards at several levels, the video
        # Keyboard: Tab reaches the cards; on one, "1" marks that student at level 1.
        page.focus(".card[data-student='2']")
        with page.expect_response(lambda r: r.url.endswith("/api/marks")) as answer:
            page.keyboard.press("1")
        assert answer.value.status == 201 and answer.value.json()["mark"]["level_given"] == 1
        assert "Grace Hopper" in page.inner_text("#toast")
        # The class line: a point per second so far, each point's shares adding up to 100 %.
        line = httpx.get(url + "api/live", timeout=5).json()["class_line"]
        assert len(line) >= 3 and all(abs(sum(p[1:]) - 1) < 1e-9 for p in line), line
        assert page.evaluate("Number(document.getElementById('class-line').dataset.points)") >= 3
        assert page.locator("#class-line polygon").count() == 4
        page.select_option("#sort-cards", "name")
        names = page.evaluate("[...document.querySelectorAll('#cards .card')].map(c => c.dataset.name)")
        assert names == sorted(names) and "Ada Lovelace" in names, names
        # Looking back: they leave the strip, and the alert has ended in the API.
        poll_value(lambda: not any(a["student"] == 1 for a in _strip(page)), 30, 0.1, "student 1 off the strip")
        ended = [a for a in httpx.get(url + "api/live/alerts", timeout=5).json()["alerts"] if a["student"] == 1]
        assert ended[0]["end"] is not None and ended[0]["end"] >= ended[0]["raised"]
        assert problems == [], problems
        page.close()
        assert run.proc.wait(180) == 0, "\n".join(run.lines[-30:])
    finally:
        run.stop()
    [report_path] = list((tmp_path / "reports").glob("*.json"))
    report = json.loads(report_path.read_text())
    assert any(e["student"] == 1 and e["end"] - e["start"] >= ALERT_SECONDS for e in report["episodes"])
    _session_page_shows_the_lesson(report, tmp_path / "reports", browser)
    _the_printed_summary(report_path)


def _the_printed_summary(report_path) -> None:
    """`engagement report <report> --pdf`: an A4 PDF with the roster's names, whose first page
    (rendered by pdftoppm) shows the class line in the levels' colours."""
    assert shutil.which("pdftoppm"), "poppler-utils is not installed (scripts/setup.sh installs it)"
    done = subprocess.run([sys.executable, "-m", "engagement.cli", "report", str(report_path), "--pdf",
                           "--alert-seconds", str(ALERT_SECONDS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pdf = report_path.with_suffix(".pdf")
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "Ada Lovelace" in text and "Grace Hopper" in text and "The class over the lesson" in text
    pages = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    assert "A4" in pages and int(next(ln.split()[-1] for ln in pages.splitlines() if ln.startswith("Pages:"))) <= 2
    subprocess.run(["pdftoppm", "-r", "80", "-png", "-f", "1", "-l", "1", str(pdf), str(pdf.with_suffix(""))],
                   check=True)
    png = next(pdf.parent.glob(f"{pdf.stem}-*1.png"))
    shutil.copy(png, ARTIFACTS / "summary-page-1.png")
    image = cv2.imread(str(png))
    # The class line's bands: level 0's blue (0x0072b2, BGR 178 114 0) fills most of a wide strip.
    blue = np.all(np.abs(image.astype(int) - (178, 114, 0)) < 30, axis=2)
    rows = np.flatnonzero(blue.sum(axis=1) > image.shape[1] * 0.5)
    assert len(rows) >= 20, f"no class line on the first page ({len(rows)} rows of level 0's colour)"


def _session_page_shows_the_lesson(report: dict, report_dir, browser) -> None:
    """The finished lesson from the report file: its class line, its alerts, the roster's names."""
    session = report["session"]
    web = WebProcess(report_dir, env={"ATTENTION_ALERT_SECONDS": str(ALERT_SECONDS)}).start()
    try:
        lesson = httpx.get(f"{web.url}/api/sessions/{session}/lesson", timeout=5).json()
        assert lesson["class_line"] and all(abs(sum(p[1:]) - 1) < 1e-9 for p in lesson["class_line"])
        assert any(a["student"] == 1 and a.get("name") == "Ada Lovelace" for a in lesson["alerts"]), lesson["alerts"]
        page = with_axe(browser.new_page(viewport={"width": 1200, "height": 900}))
        page.goto(f"{web.url}/sessions/{session}")
        _wait_js(page, "document.body.dataset.lesson === '1'", 15)
        assert axe_violations(page) == []
        # A mark by keyboard alone: the form names the student and the moment, a key the level.
        page.select_option("#mark-student", label="Grace Hopper (id 2)")
        page.fill("#mark-at", "00:03")
        page.press("#mark-at", "Enter")
        assert "Grace Hopper" in page.inner_text("#mark-what")
        with page.expect_response(lambda r: r.url.endswith("/api/marks")) as answer:
            page.keyboard.press("3")
        assert answer.value.status == 201 and answer.value.json()["mark"]["level_given"] == 3
        assert page.locator("#mark-box").is_hidden()
        # The printable summary from the page's link: a PDF.
        with page.expect_download() as download:
            page.click("#dl-pdf")
        assert download.value.suggested_filename == f"{session}-summary.pdf"
        assert open(download.value.path(), "rb").read(5) == b"%PDF-"
        assert page.locator("#class-line polygon").count() == 4
        assert "Ada Lovelace" in page.inner_text("#alerts tbody")
        assert page.locator("#timeline rect.alert-span").count() == len(lesson["alerts"]) >= 1
        assert "Grace Hopper (id 2)" in page.inner_text("#timeline")
        page.screenshot(path=str(ARTIFACTS / "session-lesson.png"), full_page=True)
        page.close()
    finally:
        web.stop()


def _lesson(store, report_dir, session: str, class_id: str, t0: float, away: dict[int, tuple[int, int]]) -> dict:
    """A lesson of 3 students at 2 predictions a second for 60 s, recorded through the real Store
    (Redis), its report built and named as the reporter does, written as a report file.
    `away`: student -> (from, to) seconds at level 3."""
    from services.reporter.report import build_report  # noqa: PLC0415
    from shared.data.roster import with_names  # noqa: PLC0415
    from shared.data.totals import FrameRecord  # noqa: PLC0415
    from tests.aggregator.harness import MODEL  # noqa: PLC0415

    for seq in range(120):
        t = seq * 0.5
        levels = {s: 3 if s in away and away[s][0] <= t < away[s][1] else 0 for s in (1, 2, 3)}
        preds = [{"student": s, "level": lv, "probs": [0.25] * 4} for s, lv in levels.items()]
        store.record_frame(FrameRecord(session, class_id, "cam0", seq, t0 + t, t, 3, preds, MODEL))
    store.end_session(session, t0 + 60, "end_of_file", class_id, "cam0")
    report = build_report(store.load_session(session), generated_at=t0 + 61)
    report = to_dict(with_names(report, {("", 1): "Ada Lovelace", ("", 2): "Grace Hopper", ("", 3): "Alan Turing"}))
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"{session}.json").write_text(json.dumps(report))
    return report


def test_the_class_page_compares_the_lessons_of_one_class(tmp_path, store, browser):
    reports = tmp_path / "reports"
    tag = store.prefix[-6:]
    t0 = 1_760_000_000.0
    monday = _lesson(store, reports, f"mon-{tag}", "maths-7b", t0, {1: (10, 40)})  # Ada away 30 s
    _lesson(store, reports, f"tue-{tag}", "maths-7b", t0 + 86_400, {2: (0, 5), 1: (20, 25)})
    _lesson(store, reports, f"art-{tag}", "art-7b", t0 + 3600, {3: (0, 60)})  # another class
    # The HTML report's timeline frames the alert too (29.5 s from first to last prediction at 3).
    page_html = report_html(monday, alert_seconds=20)
    assert page_html.count("<title>needs attention: level 2 or more for 29.5 s</title>") == 1
    assert "needs attention" not in report_html(monday, alert_seconds=40)
    web = WebProcess(reports, env={"ATTENTION_ALERT_SECONDS": "20"}).start()
    try:
        doc = httpx.get(f"{web.url}/api/classes/maths-7b", timeout=5).json()
        assert [lesson["session"] for lesson in doc["lessons"]] == [f"mon-{tag}", f"tue-{tag}"]
        for lesson in doc["lessons"]:
            assert lesson["class_line"] and all(abs(sum(p[1:]) - 1) < 1e-9 for p in lesson["class_line"])
        by_name = {s["label"]: s["seconds"] for s in doc["students"]}
        assert by_name["Ada Lovelace"][0] == 30.0 and by_name["Ada Lovelace"][1] == 5.0, by_name
        assert by_name["Alan Turing"] == [0.0, 0.0]  # art-7b's lesson is not this class's
        assert [len(lesson["alerts"]) for lesson in doc["lessons"]] == [1, 0]  # 30 s >= 20 s; 5 s is not
        # In the first lesson a third of the class was at level 3 from 10 s to 40 s.
        mid = [p for p in doc["lessons"][0]["class_line"] if 15 < p[0] < 35]
        assert mid and all(abs(p[4] - 1 / 3) < 1e-9 for p in mid)
        page = with_axe(browser.new_page(viewport={"width": 1100, "height": 800}))
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        for path in ("/sessions", f"/sessions/mon-{tag}", "/api/docs", "/no-such-page"):
            page.goto(web.url + path)
            page.wait_for_load_state("load")
            if path.startswith("/sessions/"):
                _wait_js(page, "document.body.dataset.lesson === '1'", 15)
            assert axe_violations(page) == [], path
        problems.clear()  # the 404 page's own "Failed to load resource"
        page.goto(f"{web.url}/sessions")
        page.click("a[href='/classes/maths-7b']")
        page.wait_for_url("**/classes/maths-7b")
        _wait_js(page, "document.body.dataset.loaded === '1'", 15)
        assert page.locator("#lines figure svg polygon").count() == 8  # 4 bands per lesson
        rows = page.evaluate("""() => [...document.querySelectorAll('#compare tbody tr')].map(tr =>
            [...tr.children].map(c => c.textContent))""")
        assert ["Ada Lovelace", "30 s", "5 s"] in rows, rows
        page.screenshot(path=str(ARTIFACTS / "class.png"), full_page=True)
        assert axe_violations(page) == []
        assert problems == [], problems
        assert httpx.get(f"{web.url}/classes/no-such-class", timeout=5).status_code == 404
    finally:
        web.stop()


@pytest.mark.parametrize("class_level", [False, True])
def test_screen_names_on_cards_and_alerts_and_none_in_class_level_mode(tmp_path, live_link, browser, class_level):
    """The names facedetect read on the call tiles (in Redis on this box) name the cards and the
    alerts; with CLASS_LEVEL_ONLY nothing names anyone and no alert is raised."""
    import redis  # noqa: PLC0415

    from shared.data.roster import TileNames  # noqa: PLC0415
    from tests.support.env import REDIS_URL  # noqa: PLC0415

    env = {"ATTENTION_ALERT_SECONDS": "1", "CLASS_LEVEL_ONLY": "1" if class_level else "0"}
    web = WebProcess(tmp_path / "reports", live_link.spec, env=env).start()
    session = f"tiles-{web.prefix}"
    client = redis.Redis.from_url(REDIS_URL)
    TileNames(client, web.prefix).save(session, "cam0", {1: "Marie C."})
    try:
        t0 = time.time()

        def seen() -> dict | None:
            live_link.update(session, int((time.time() - t0) * 10), {1: 3, 2: 0})
            doc = httpx.get(f"{web.url}/api/live", timeout=5).json()
            named = any(s.get("name") == "Marie C." for s in doc["students"]) or class_level
            return doc if doc["session"] == session and time.time() - t0 > 2.5 and named else None

        doc = poll_value(seen, 20, 0.2, "two seconds of updates (and the tile's name on the card)")
        alerts = httpx.get(f"{web.url}/api/live/alerts", timeout=5).json()["alerts"]
        if class_level:
            assert doc["students"] == [] and doc["alerts"] == [] and alerts == []
            assert "Marie" not in json.dumps(doc) and doc["class_line"]  # the class line names nobody
            page = with_axe(browser.new_page(viewport={"width": 1200, "height": 800}))
            page.goto(web.url + "/")
            _wait_js(page, "!document.getElementById('class').hidden", 10)  # the class line shows
            assert page.locator("#attention").is_hidden() and page.locator("#cards").is_hidden()
            assert axe_violations(page) == []
            page.close()
        else:
            assert [(a["student"], a.get("name")) for a in alerts] == [(1, "Marie C.")]
            assert [a["name"] for a in doc["alerts"]] == ["Marie C."]
    finally:
        web.stop()
        client.delete(f"{web.prefix}:session:{session}:tilenames:cam0")
