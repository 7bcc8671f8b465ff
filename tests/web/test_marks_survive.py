"""Issue 21: a teacher's mark made on the live page during a real class survives the class.

`engagement run` with no REDIS_URL (the default) keeps the class's totals and marks in a
private Redis that goes with the class. The mark must still be there afterwards: in the
report files, on the past session's page in Chromium and in its API (served by `engagement
web` on a Redis that never saw the mark, and on none at all), and in `engagement-train
feedback`'s export, once.
"""

from __future__ import annotations

import csv
import json
import re
import socket

import httpx

from shared.data.clock import offset_clock as _clock
from shared.data.report_export import report_html
from shared.ops.ports import free_ports
from tests.support.web import ARTIFACTS, Launcher, WebProcess
from tests.support.web import wait_js as _wait_js
from tools.sample_video import make_sample_video
from training.cli import main as train_main


def test_a_live_mark_survives_the_class_and_its_private_redis(tmp_path, browser):
    video = make_sample_video(tmp_path / "class.avi", seconds=10.0, faces=1)
    report_dir = tmp_path / "reports"
    (web_port,) = free_ports(1)
    run = Launcher(str(video["path"]), report_dir, web_port, redis_url=None)
    try:
        url = run.live_url()
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.goto(url, wait_until="domcontentloaded")
        _wait_js(page, "document.querySelectorAll('.card').length >= 1", 90)
        with page.expect_response(lambda r: r.url.endswith("/api/marks")) as answer:
            page.locator(".card[data-student='1'] .marks button[data-level='3']").click()
        assert answer.value.status == 201, answer.value.text()
        mark = answer.value.json()["mark"]
        page.close()
        assert run.proc.wait(180) == 0, "\n".join(run.lines[-30:])
    finally:
        run.stop()
    private = next(re.search(r"private redis-server at redis://127\.0\.0\.1:(\d+)/", ln) for ln in run.lines
                   if "private redis-server at" in ln)
    with socket.socket() as s:  # the class's Redis is gone with it
        assert s.connect_ex(("127.0.0.1", int(private.group(1)))) != 0

    # The report files carry the mark.
    [js] = list(report_dir.glob("*.json"))
    report = json.loads(js.read_text())
    session = report["session"]
    [kept] = [m for m in report["marks"] if m["created_at"] == mark["created_at"]]
    assert (kept["student"], kept["level_given"], kept["t"]) == ("1", 3, mark["t"])
    assert re.search(r"^  \d\d:\d\d\.\d id 1: teacher 3 ", js.with_suffix(".txt").read_text(), re.M)
    assert "<h2>Teacher's marks (1)</h2>" in report_html(report)

    # The past session's page, from `engagement web` on a Redis that never saw the mark.
    web = WebProcess(report_dir).start()  # a prefix of its own: none of the class's keys
    try:
        api = httpx.get(f"{web.url}/api/sessions/{session}/marks", timeout=10).json()
        assert [(m["student"], m["level_given"], m["created_at"]) for m in api["marks"]] == \
            [("1", 3, mark["created_at"])]
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{web.url}/sessions/{session}", wait_until="domcontentloaded")
        _wait_js(page, "document.body.dataset.loaded === '1'", 15)
        _wait_js(page, "document.getElementById('agreement').dataset.marks === '1'", 10)
        assert "No marks yet" not in page.inner_text("#agreement")
        assert page.locator("#timeline circle.mark").count() == 1
        # A mark made now, on the past session's page, goes to this Redis: both show, each once.
        page.locator("#timeline rect.cell").first.click()
        with page.expect_response(lambda r: r.url.endswith("/api/marks")) as answer:
            page.locator("#mark-levels button").nth(0).click()
        assert answer.value.status == 201
        _wait_js(page, "document.getElementById('agreement').dataset.marks === '2'", 10)
        assert page.locator("#timeline circle.mark").count() == 2
        # Episodes read as the text report writes them (media time, mm:ss.s).
        episodes = [c.inner_text() for c in page.locator("#episodes tbody tr td:nth-child(2)").all()]
        assert episodes == [_clock(e["start_media"]) for e in report["episodes"]] or report["episodes"] == []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "session-marks-kept.png"), full_page=True)
        assert problems == [], problems
        page.close()
        # The export: the report's mark and the one in this Redis, each once (the report read twice).
        out = tmp_path / "marks.csv"
        assert train_main(["feedback", "--out", str(out), "--redis-url", web.env["REDIS_URL"], "--redis-prefix",
                           web.prefix, "--session", session, "--reports", str(report_dir),
                           "--reports", str(report_dir)]) == 0
        with out.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert sorted((r["level_given"], r["source"]) for r in rows) == [("0", "session"), ("3", "live")]
    finally:
        web.stop()

    # With no Redis at all, the page's API still shows the report's mark.
    (dead,) = free_ports(1)
    web = WebProcess(report_dir, env={"REDIS_URL": f"redis://127.0.0.1:{dead}/0"}).start()
    try:
        r = httpx.get(f"{web.url}/api/sessions/{session}/marks", timeout=10)
        assert r.status_code == 200 and [m["created_at"] for m in r.json()["marks"]] == [mark["created_at"]]
    finally:
        web.stop()
