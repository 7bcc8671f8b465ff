"""The web service's API on a real process: live state from the live link, the streams,
marks (stored in the real Redis), past sessions from report files, access and privacy."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import uuid

import httpx
import pytest
import redis

from shared.data.marks import MarkStore
from shared.data.totals import FrameRecord, Store
from shared.ops.ports import free_ports
from tests.support.env import delete_prefix
from tests.support.reports import write_built_report
from tests.support.web import MODEL, REDIS_URL, WebProcess, jpeg, poll_value


def _session() -> str:
    return f"web-{uuid.uuid4().hex[:8]}"


def _feed_until_live(web, link, session: str, levels: dict[int, int], seq: int = 0) -> dict:
    """Send updates until the web shows them (a SUB misses what is sent before it joined)."""
    def shown():
        link.update(session, seq, levels)
        doc = httpx.get(f"{web.url}/api/live").json()
        return doc if doc["session"] == session and len(doc["students"]) == len(levels) else None
    return poll_value(shown, 15, 0.2, "the update on /api/live")


def _read_mjpeg_part(url: str, timeout: float = 10.0) -> dict[str, str]:
    with httpx.stream("GET", url, timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
        buf = b""
        for chunk in r.iter_bytes():
            buf += chunk
            if b"\r\n\r\n" in buf:
                head = buf.split(b"\r\n\r\n", 1)[0].decode()
                return dict(line.split(": ", 1) for line in head.splitlines()[1:])
    raise AssertionError("no MJPEG part")


def test_live_state_video_and_events_follow_the_link(web, live_link):
    session = _session()
    doc = _feed_until_live(web, live_link, session, {1: 0, 2: 3})
    assert doc["model"]["name"] == MODEL["name"] and doc["note"].startswith("attention baseline")
    assert [(s["id"], s["level"]) for s in doc["students"]] == [(1, 0), (2, 3)]
    for s in doc["students"]:
        assert set(s) >= {"id", "level", "probs", "last_seen", "seconds_at_level_2_or_more", "history"}
    # Time at level >= 2 grows for student 2 only, by the time between its predictions.
    t = time.time()
    live_link.update(session, 1, {1: 0, 2: 3}, t_capture=t)
    live_link.update(session, 2, {1: 0, 2: 3}, t_capture=t + 1.0)
    doc = poll_value(lambda: (d := httpx.get(f"{web.url}/api/live").json())["seq"] == 2 and d, 5)
    at2 = {s["id"]: s["seconds_at_level_2_or_more"] for s in doc["students"]}
    assert at2[1] == 0 and at2[2] >= 1.0
    # Video: the frames of the link, each part stamped with its capture time.
    def part():
        live_link.frame(session, 7)
        return _read_mjpeg_part(f"{web.url}/api/live/video.mjpg", timeout=3)
    headers = poll_value(lambda: _try(part), 10, 0.1, "an MJPEG part")
    assert headers["Content-Type"] == "image/jpeg" and float(headers["X-Capture-Time"]) > 0
    # Server-sent events: one JSON document per update.
    with httpx.stream("GET", f"{web.url}/api/live/events", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        live_link.update(session, 3, {1: 2, 2: 1}, t_capture=t + 2.0)
        for line in r.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["seq"] == 3:
                    break
    assert {s["id"]: s["level"] for s in event["students"]} == {1: 2, 2: 1}
    assert "history" not in event["students"][0]
    # The report is written: the page learns the session ended.
    live_link.eos(session)
    poll_value(lambda: httpx.get(f"{web.url}/api/live").json()["ended"], 5, what="ended")


def _try(fn):
    try:
        return fn()
    except (httpx.HTTPError, AssertionError):
        return None


def test_marks_are_filled_from_the_live_state_and_stored(web, live_link):
    session = _session()
    doc = _feed_until_live(web, live_link, session, {4: 2})
    t = doc["students"][0]["last_seen"]
    r = httpx.post(f"{web.url}/api/marks", json={"session": session, "student": 4, "t": t, "level_given": 0})
    assert r.status_code == 201, r.text
    mark = r.json()["mark"]
    assert mark["level_predicted"] == 2 and mark["source"] == "live"
    assert mark["signals"] == {"yaw": 20.0, "pitch": -3.0, "eye_openness": 0.3, "score": 0.1}  # numbers only
    stored = MarkStore(redis.Redis.from_url(REDIS_URL), prefix=web.prefix).for_session(session)
    assert [(m.student, m.level_given, m.level_predicted) for m in stored] == [("4", 0, 2)]
    agreement = httpx.get(f"{web.url}/api/sessions/{session}/marks").json()["agreement"]
    assert agreement["marks"] == 1 and agreement["agreed"] == 0 and agreement["rate"] == 0.0
    # Malformed marks: 422 naming the field; an unknown session: 404.
    for body, field in [({"session": session, "student": 4, "t": t, "level_given": 7}, "level_given"),
                        ({"session": session, "t": t, "level_given": 1}, "student"),
                        ({"session": session, "student": 4, "t": "now", "level_given": 1}, "t"),
                        ({"session": "", "student": 4, "t": t, "level_given": 1}, "session"),
                        ({"session": session, "student": 4, "t": t - 3600, "level_given": 1}, "t")]:
        r = httpx.post(f"{web.url}/api/marks", json=body)
        assert r.status_code == 422, body
        assert [e["field"] for e in r.json()["detail"]] == [field], r.json()
    r = httpx.post(f"{web.url}/api/marks", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = httpx.post(f"{web.url}/api/marks", json={"session": "no-such", "student": 1, "t": t, "level_given": 1})
    assert r.status_code == 404
    assert len(MarkStore(redis.Redis.from_url(REDIS_URL), prefix=web.prefix).for_session(session)) == 1


def _write_report(report_dir, session: str, students: int = 2, class_level_only: bool = False) -> dict:
    return write_built_report(report_dir, session, students=students, class_level_only=class_level_only)


def test_past_sessions_pages_downloads_and_404(tmp_path, web):
    report = _write_report(tmp_path / "reports", "past-1")
    listed = httpx.get(f"{web.url}/api/sessions").json()
    assert [s["session"] for s in listed] == ["past-1"] and listed[0]["students"] == 2
    assert listed[0]["streams"] == ["cam0"]
    assert httpx.get(f"{web.url}/api/sessions/past-1").json() == report
    page = httpx.get(f"{web.url}/sessions")
    assert page.status_code == 200 and 'href="/sessions/past-1"' in page.text
    assert httpx.get(f"{web.url}/sessions/past-1").status_code == 200
    csv_text = httpx.get(f"{web.url}/sessions/past-1/report.csv").text
    # The page's CSV is `engagement report --csv`'s (shared/data/report_export.py): one file, one format.
    assert csv_text.splitlines()[0].startswith("frame,timestamp,t_capture,stream,student,")
    assert len(csv_text.splitlines()) == 41
    dl = httpx.get(f"{web.url}/sessions/past-1/report.json")
    assert "attachment" in dl.headers["content-disposition"] and dl.json() == report
    for path in ("/sessions/nope", "/sessions/..%2Freports%2Fpast-1", "/sessions/.hidden"):
        r = httpx.get(web.url + path)
        assert r.status_code == 404 and "text/html" in r.headers["content-type"], path
        assert "Not found" in r.text
    assert httpx.get(f"{web.url}/api/sessions/nope").status_code == 404
    # A mark on the session page: the model's level comes from the report's timeline.
    r = httpx.post(f"{web.url}/api/marks", json={"session": "past-1", "student": 1, "t": 1_700_000_001.0,
                                                 "level_given": 1})
    assert r.status_code == 201 and r.json()["mark"]["level_predicted"] == 3 and r.json()["mark"]["source"] == "session"


def test_every_page_loads_only_its_own_scripts_under_a_strict_csp(tmp_path, web):
    _write_report(tmp_path / "reports", "past-2")
    for path in ("/", "/sessions", "/sessions/past-2", "/api/docs", "/sessions/missing"):
        r = httpx.get(web.url + path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), (path, refs)
        assert "<script>" not in r.text and "style=" not in r.text, path
        for ref in refs:
            if ref.startswith("/static/"):
                static = httpx.get(web.url + ref)
                # No other host: the SVG namespace is a name, not something loaded.
                text = static.text.replace("http://www.w3.org/2000/svg", "")
                assert static.status_code == 200 and "http://" not in text and "https://" not in text, ref
                assert "import(" not in text and "url(" not in text, ref
    spec = httpx.get(f"{web.url}/api/openapi.json").json()
    assert {"/api/live", "/api/sessions", "/api/sessions/{session}", "/api/marks"} <= set(spec["paths"])
    assert "/api/live" in httpx.get(f"{web.url}/api/docs").text


def test_slow_browser_loses_frames_counted_and_alone(web, live_link):
    session = _session()
    _feed_until_live(web, live_link, session, {1: 0})
    # A browser that opens the video and never reads it.
    stalled = socket.create_connection(("127.0.0.1", web.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /api/live/video.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    poll_value(lambda: web.metric("engagement_web_clients", stream="video") >= 1, 5, what="the stalled client")
    big = jpeg(1, (1280, 960))  # ~100 KB: socket buffers fill after a few frames
    before = web.metric("engagement_web_dropped_total", stream="video")
    started = time.monotonic()
    for seq in range(200):
        live_link.frame(session, seq, big)
        time.sleep(0.005)
    sending = time.monotonic() - started
    poll_value(lambda: web.metric("engagement_web_dropped_total", stream="video") > before + 50, 10,
             what="frames dropped for the stalled browser")
    # Another browser still gets fresh frames, and the service answers.
    live_link.frame(session, 999, jpeg(999))
    headers = _read_mjpeg_part(f"{web.url}/api/live/video.mjpg", timeout=5)
    assert int(headers["X-Seq"]) >= 190
    assert httpx.get(f"{web.url}/api/live", timeout=2).status_code == 200
    stalled.close()
    print(f"200 frames of {len(big)} bytes published in {sending:.2f} s with a stalled browser")


def test_class_level_only_removes_students_video_and_marks(tmp_path, live_link):
    web = WebProcess(tmp_path / "reports", live_link.spec, env={"EU_AI_ACT_MODE": "1"}).start()
    try:
        session = _session()
        _write_report(tmp_path / "reports", "past-3")

        def totals_shown():
            live_link.update(session, 0, {1: 2, 2: 0})
            doc = httpx.get(f"{web.url}/api/live").json()
            return doc if doc["session"] == session else None
        doc = poll_value(totals_shown, 15, 0.2, "the update")
        assert doc["class_level_only"] is True and doc["students"] == []
        assert doc["totals"]["levels"]["2"] == 1
        # Several streams: each one's totals, still no student.
        streams = _two_stream_totals(2)
        live_link.update(session, 1, {1: 3}, stream="cam1", streams=streams)
        doc = poll_value(lambda: (d := httpx.get(f"{web.url}/api/live").json()).get("stream_totals") and d, 10)
        assert doc["stream_totals"] == streams and doc["students"] == []
        assert httpx.get(f"{web.url}/api/live/video.mjpg?stream=cam1").status_code == 404
        assert httpx.get(f"{web.url}/api/live/video.mjpg").status_code == 404
        r = httpx.post(f"{web.url}/api/marks", json={"session": session, "student": 1, "t": time.time(),
                                                     "level_given": 1})
        assert r.status_code == 404
        past = httpx.get(f"{web.url}/api/sessions/past-3").json()
        assert past["students"] == [] and past["timeline"] == [] and past["episodes"] == []
        # Each stream's section keeps its totals, not its students.
        assert [(st["stream"], st["students"], st["episodes"], st["totals"]["frames"]) for st in past["streams"]] == \
            [("cam0", [], [], 20)]
        assert "1," not in httpx.get(f"{web.url}/sessions/past-3/report.csv").text.splitlines()[1][:20]
    finally:
        web.stop()


def test_refuses_a_public_address_without_a_token_and_checks_it(tmp_path):
    web = WebProcess(tmp_path / "reports", env={"WEB_BIND": "0.0.0.0", "WEB_TOKEN": ""})
    web.start(wait=False)
    code, out, err = web.stop() if web.proc.wait(30) is None else (web.proc.returncode, *web.proc.communicate())
    assert code == 3
    assert "refusing" in err and "WEB_TOKEN" in err and "Traceback" not in err
    token = f"tok-{uuid.uuid4().hex}"
    web = WebProcess(tmp_path / "reports", env={"WEB_BIND": "0.0.0.0", "WEB_TOKEN": token}).start()
    try:
        url = f"http://127.0.0.1:{web.port}/api/live"
        r = httpx.get(url)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200
        basic = base64.b64encode(f"teacher:{token}".encode()).decode()
        assert httpx.get(url, headers={"Authorization": f"Basic {basic}"}).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{web.metrics_port}/healthz").status_code == 200  # health: no token
    finally:
        _, _, err = web.stop()
    assert token not in err


def test_restarted_web_shows_the_class_again_from_redis(tmp_path, live_link):
    session = _session()
    prefix = f"webtest-{uuid.uuid4().hex[:8]}"
    store = Store.from_url(REDIS_URL, prefix=prefix)
    t0 = time.time() - 5
    for seq in range(6):  # what the aggregator wrote before the web was killed
        store.record_frame(FrameRecord(session, "c1", "cam0", seq, t0 + seq * 0.5, None, 2,
                                       [{"student": 1, "level": 0, "probs": [0.7, 0.1, 0.1, 0.1]},
                                        {"student": 2, "level": 3 if seq >= 2 else 1, "probs": [0.1, 0.1, 0.1, 0.7]}],
                                       MODEL))
    web = WebProcess(tmp_path / "reports", live_link.spec, prefix=prefix).start()
    try:
        first = httpx.get(f"{web.url}/api/live").json()
        web.kill()  # SIGKILL mid-class
        web = WebProcess(tmp_path / "reports", live_link.spec, prefix=prefix).start()
        again = httpx.get(f"{web.url}/api/live").json()
        assert again["session"] == first["session"] == session
        assert [(s["id"], s["level"]) for s in again["students"]] == [(1, 0), (2, 3)]
        assert again["totals"]["frames"] == 6
        # Level 3 from seq 2 to seq 5: three intervals of 0.5 s (the last prediction has no end yet).
        assert again["students"][1]["seconds_at_level_2_or_more"] == pytest.approx(1.5, abs=0.01)
        assert len(again["students"][0]["history"]) == 6
    finally:
        web.stop()
        delete_prefix(prefix)  # the session, and the class's index of it


def test_busy_port_and_unreachable_redis_are_said_plainly(tmp_path, live_link):
    holder = socket.create_server(("127.0.0.1", 0))
    busy = WebProcess(tmp_path / "reports", env={"WEB_PORT": str(holder.getsockname()[1])})
    busy.start(wait=False)
    try:
        busy.proc.wait(30)
        code, err = busy.proc.returncode, busy.proc.communicate()[1]
    finally:
        holder.close()
    assert code == 2 and "cannot serve the pages" in err and "Traceback" not in err
    # Redis down: the live page still follows the link; a mark gets 503, not a crash.
    (dead,) = free_ports(1)
    web = WebProcess(tmp_path / "reports", live_link.spec, env={"REDIS_URL": f"redis://127.0.0.1:{dead}/0"}).start()
    try:
        session = _session()
        doc = _feed_until_live(web, live_link, session, {1: 1})
        r = httpx.post(f"{web.url}/api/marks", json={"session": session, "student": 1,
                                                     "t": doc["students"][0]["last_seen"], "level_given": 1})
        assert r.status_code == 503 and "not stored" in r.json()["detail"]
        assert httpx.get(f"{web.url}/api/sessions/{session}/marks").status_code == 503
    finally:
        _, _, err = web.stop()
    assert "Traceback" not in err


def test_a_student_gone_longer_than_the_charts_loses_the_card(web, live_link):
    session = _session()
    _feed_until_live(web, live_link, session, {1: 0, 2: 1}, seq=0)
    later = time.time() + 301  # student 2 last seen more than five minutes before this update
    live_link.update(session, 2, {1: 2}, t_capture=later)
    doc = poll_value(lambda: (d := httpx.get(f"{web.url}/api/live").json())["seq"] == 2 and d, 5)
    assert [s["id"] for s in doc["students"]] == [1]


def test_an_example_token_is_refused_on_a_public_address(tmp_path):
    web = WebProcess(tmp_path / "reports", env={"WEB_BIND": "0.0.0.0", "WEB_TOKEN": "change-me"})
    web.start(wait=False)
    web.proc.wait(30)
    code, err = web.proc.returncode, web.proc.communicate()[1]
    assert code == 3 and "WEB_TOKEN is an example value" in err and "change-me" not in err  # never the value


def test_roster_names_show_on_the_cards_and_not_when_class_level_only(tmp_path, live_link):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,name\n2,Grace Hopper\n")
    web = WebProcess(tmp_path / "reports", live_link.spec, env={"ROSTER": str(roster)}).start()
    try:
        doc = _feed_until_live(web, live_link, _session(), {1: 0, 2: 3})
    finally:
        web.stop()
    assert {s["id"]: s.get("name") for s in doc["students"]} == {1: None, 2: "Grace Hopper"}
    web = WebProcess(tmp_path / "reports", live_link.spec, env={"ROSTER": str(roster), "CLASS_LEVEL_ONLY": "1"}).start()
    try:
        session = _session()

        def shown():
            live_link.update(session, 0, {2: 3})
            d = httpx.get(f"{web.url}/api/live").json()
            return d if d["session"] == session else None
        doc = poll_value(shown, 15, 0.2, "the update")
    finally:
        web.stop()
    assert doc["students"] == [] and "Grace" not in json.dumps(doc)


def _two_stream_totals(frames: int) -> dict:
    return {"cam0": {"frames": frames, "frames_without_faces": 0, "faces": 2, "predictions": 2,
                     "levels": {"0": 1, "1": 0, "2": 0, "3": 1}},
            "cam1": {"frames": frames, "frames_without_faces": 0, "faces": 1, "predictions": 1,
                     "levels": {"0": 0, "1": 0, "2": 0, "3": 1}}}


def test_an_update_of_one_stream_leaves_the_other_streams_totals_on_the_page(web, live_link):
    """An update carries its own stream's totals only (the aggregator's updates): the page keeps the others."""
    session = _session()
    t = time.time()
    live_link.update(session, 0, {1: 0}, t_capture=t, stream="cam0", streams=_two_stream_totals(1))
    newer = {"frames": 2, "frames_without_faces": 0, "faces": 2, "predictions": 2, "levels": {"0": 0, "1": 0, "2": 1,
                                                                                             "3": 1}}

    def cam1_newer():
        live_link.update(session, 1, {1: 2}, t_capture=t + 0.5, stream="cam1", streams={"cam1": newer})
        doc = httpx.get(f"{web.url}/api/live").json()
        return doc if doc["session"] == session and doc["stream_totals"].get("cam1") == newer else None
    doc = poll_value(cam1_newer, 15, 0.2, "cam1's newer totals on /api/live")
    assert doc["stream_totals"]["cam0"] == _two_stream_totals(1)["cam0"]


def test_two_streams_students_apart_a_video_each_and_marks_by_stream(web, live_link):
    """cam0 and cam1 each have a student 1 (at levels 0 and 3): two cards, a video per stream,
    and a mark of cam1's #1 gets cam1's prediction, not cam0's."""
    session = _session()

    def both_shown():
        t = time.time()
        live_link.update(session, 0, {1: 0, 2: 3}, t_capture=t, stream="cam0", streams=_two_stream_totals(1))
        live_link.update(session, 0, {1: 3}, t_capture=t, stream="cam1", streams=_two_stream_totals(1))
        doc = httpx.get(f"{web.url}/api/live").json()
        return doc if doc["session"] == session and len(doc["students"]) == 3 else None
    doc = poll_value(both_shown, 15, 0.2, "both streams on /api/live")
    assert doc["streams"] == ["cam0", "cam1"]
    assert [(s["stream"], s["id"], s["level"]) for s in doc["students"]] == [("cam0", 1, 0), ("cam0", 2, 3),
                                                                             ("cam1", 1, 3)]
    assert doc["stream_totals"]["cam1"]["levels"]["3"] == 1 and doc["stream_totals"]["cam0"]["predictions"] == 2
    # A video per stream: ?stream=cam1 serves cam1's frames only; a page may open it before the first frame.
    with httpx.stream("GET", f"{web.url}/api/live/video.mjpg?stream=cam1", timeout=3) as r:
        assert r.status_code == 200
    def part(stream):
        def get():
            live_link.frame(session, 9, stream="cam0")
            live_link.frame(session, 9, stream="cam1")
            return _read_mjpeg_part(f"{web.url}/api/live/video.mjpg?stream={stream}", timeout=3)
        return poll_value(lambda: _try(get), 10, 0.1, f"an MJPEG part of {stream}")
    assert part("cam1")["X-Stream"] == "cam1" and part("cam0")["X-Stream"] == "cam0"
    assert httpx.get(f"{web.url}/api/live/video.mjpg?stream=nope").status_code == 404
    # Marks name the stream; the model's level is that stream's student's.
    t = doc["students"][2]["last_seen"]
    for stream, expected in (("cam1", 3), ("cam0", 0)):
        r = httpx.post(f"{web.url}/api/marks", json={"session": session, "stream": stream, "student": 1, "t": t,
                                                     "level_given": 2})
        assert r.status_code == 201, r.text
        assert r.json()["mark"]["level_predicted"] == expected and r.json()["mark"]["stream"] == stream
    stored = MarkStore(redis.Redis.from_url(REDIS_URL), prefix=web.prefix).for_session(session)
    assert sorted((m.stream, m.student, m.level_predicted) for m in stored) == [("cam0", "1", 0), ("cam1", "1", 3)]
    r = httpx.post(f"{web.url}/api/marks", json={"session": session, "stream": "cam1", "student": 2, "t": t,
                                                 "level_given": 2})
    assert r.status_code == 422  # cam1 has no student 2 (cam0 has)


def test_a_past_two_stream_session_takes_marks_by_stream(tmp_path, web):
    report = _write_report(web.report_dir, "past-two", students=1)
    # The same file with a second stream whose student 1 is always at level 3.
    extra = [{**e, "stream": "cam1", "level": 3} for e in report["timeline"]]
    report["timeline"] = sorted(report["timeline"] + extra, key=lambda e: (e["t_capture"], e["stream"]))
    report["streams"] = [{**report["streams"][0]}, {**report["streams"][0], "stream": "cam1"}]
    (web.report_dir / "past-two.json").write_text(json.dumps(report))
    t = report["timeline"][0]["t_capture"]
    r = httpx.post(f"{web.url}/api/marks", json={"session": "past-two", "stream": "cam1", "student": 1, "t": t,
                                                 "level_given": 3})
    assert r.status_code == 201, r.text
    assert r.json()["mark"]["level_predicted"] == 3 and r.json()["mark"]["source"] == "session"
    r = httpx.post(f"{web.url}/api/marks", json={"session": "past-two", "stream": "cam0", "student": 1, "t": t,
                                                 "level_given": 3})
    assert r.json()["mark"]["level_predicted"] == 1  # (0 + 1) % 4 at the first moment


def test_a_web_started_mid_class_shows_both_streams_and_the_one_that_ended(tmp_path, live_link):
    """Two streams in Redis, cam1 already ended (gave up): a web started now shows both
    streams' students apart, each stream's totals, and cam1's end."""
    session = _session()
    prefix = f"webtest-{uuid.uuid4().hex[:8]}"
    store = Store.from_url(REDIS_URL, prefix=prefix)
    t0 = time.time() - 5
    for seq in range(4):
        for stream, level in (("cam0", 0), ("cam1", 3)):
            store.record_frame(FrameRecord(session, "c1", stream, seq, t0 + seq * 0.5, None, 1,
                                           [{"student": 1, "level": level, "probs": [0.25] * 4}], MODEL))
    store.end_stream(session, "cam1", t0 + 2.0, "gave_up", ["cam0", "cam1"])
    web = WebProcess(tmp_path / "reports", live_link.spec, prefix=prefix).start()
    try:
        doc = poll_value(lambda: (d := httpx.get(f"{web.url}/api/live").json())["stream_ends"] and d, 10, 0.2,
                         "cam1's end on /api/live")
        assert doc["session"] == session and doc["streams"] == ["cam0", "cam1"]
        assert [(s["stream"], s["id"], s["level"]) for s in doc["students"]] == [("cam0", 1, 0), ("cam1", 1, 3)]
        assert {k: v["frames"] for k, v in doc["stream_totals"].items()} == {"cam0": 4, "cam1": 4}
        assert doc["stream_ends"]["cam1"]["end_reason"] == "gave_up" and "cam0" not in doc["stream_ends"]
    finally:
        web.stop()
        delete_prefix(prefix)  # the session, and the class's index of it


def test_a_live_mark_is_kept_on_disk_and_a_disk_that_refuses_it_leaves_redis_to_hold_it(tmp_path, live_link):
    """JOURNAL_DIR: a mark of the live class goes to <dir>/<session>/marks.jsonl as well as Redis; a folder
    it cannot write there is one warning and a counter, and Redis still takes the mark (201)."""
    from shared.data.marks_journal import marks_path, read_marks

    journal = tmp_path / "journal"
    web = WebProcess(tmp_path / "reports", live_link.spec, env={"JOURNAL_DIR": str(journal)}).start()
    try:
        session = _session()
        doc = _feed_until_live(web, live_link, session, {4: 2})
        t = doc["students"][0]["last_seen"]
        r = httpx.post(f"{web.url}/api/marks", json={"session": session, "student": 4, "t": t, "level_given": 1})
        assert r.status_code == 201 and r.json()["kept"] == ["redis", "disk"], r.text
        [kept] = read_marks(journal, session)
        assert (kept.student, kept.level_given, kept.created_at) == ("4", 1, r.json()["mark"]["created_at"])
        path = marks_path(journal, session)
        saved = path.read_bytes()
        path.unlink()
        path.mkdir()  # the next write fails (EISDIR), as a full or read-only disk's would, root or not
        r = httpx.post(f"{web.url}/api/marks", json={"session": session, "student": 4, "t": t, "level_given": 3})
        assert httpx.get(f"{web.url}/api/sessions/{session}/marks").status_code == 200  # an unreadable file: Redis's
        path.rmdir()
        path.write_bytes(saved)
        assert r.status_code == 201 and r.json()["kept"] == ["redis"], r.text
        assert web.metric("engagement_web_mark_disk_errors_total") == 1
        stored = MarkStore(redis.Redis.from_url(REDIS_URL), prefix=web.prefix).for_session(session)
        assert sorted(m.level_given for m in stored) == [1, 3]
        api = httpx.get(f"{web.url}/api/sessions/{session}/marks").json()
        assert sorted(m["level_given"] for m in api["marks"]) == [1, 3]  # the disk's copy counted once
    finally:
        web.stop()


def test_a_report_the_reporter_put_in_the_fallback_folder_is_a_past_session(tmp_path, live_link):
    """REPORT_DIR refused the report (a full or read-only disk) and the reporter wrote it to
    REPORT_FALLBACK_DIR: the pages list and show it, a mark of it is answered from it, and, the class
    being reported, the mark is not journaled for a reporter that will never read it again."""
    fallback, journal = tmp_path / "fallback", tmp_path / "journal"
    web = WebProcess(tmp_path / "reports", live_link.spec,
                     env={"REPORT_FALLBACK_DIR": str(fallback), "JOURNAL_DIR": str(journal)}).start()
    try:
        report = _write_report(fallback, "past-fallen-back")
        assert [s["session"] for s in httpx.get(f"{web.url}/api/sessions").json()] == ["past-fallen-back"]
        assert httpx.get(f"{web.url}/api/sessions/past-fallen-back").json() == report
        assert httpx.get(f"{web.url}/sessions/past-fallen-back").status_code == 200
        r = httpx.post(f"{web.url}/api/marks", json={"session": "past-fallen-back", "student": 1,
                                                     "t": 1_700_000_001.0, "level_given": 1})
        assert r.status_code == 201, r.text
        assert r.json()["mark"]["source"] == "session" and r.json()["kept"] == ["redis"]
        assert not (journal / "past-fallen-back").exists()
        # The same session in both folders (written again to REPORT_DIR later): REPORT_DIR's is shown, once.
        again = _write_report(tmp_path / "reports", "past-fallen-back", students=3)
        listed = httpx.get(f"{web.url}/api/sessions").json()
        assert [s["session"] for s in listed] == ["past-fallen-back"] and listed[0]["students"] == 3
        assert httpx.get(f"{web.url}/api/sessions/past-fallen-back").json() == again
    finally:
        code, _, err = web.stop()
    assert code == 0, err
