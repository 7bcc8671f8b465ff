"""Helpers of the web service's tests (tests/web): the service as a real process, its live
link fed by a PUB socket the test binds (standing in for the reporter: the same messages,
the real bus code), and `engagement run` as a process whose lines are collected."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np
import zmq

from shared.bus.messages import encode, make_header
from shared.ops.config import REPO_ROOT
from shared.ops.ports import free_ports
from tests.support.env import REDIS_URL, delete_prefix

ARTIFACTS = Path(os.environ.get("WEB_ARTIFACTS", REPO_ROOT / "artifacts" / "web"))  # browser tests' screenshots
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LABELS = ["attentive", "partly attentive", "distracted", "looking away"]
MODEL = {"name": "attention-baseline", "kind": "frame", "baseline": True, "labels": LABELS}


def jpeg(seq: int, size: tuple[int, int] = (320, 240), background: int = 40) -> bytes:
    """A real JPEG that differs per frame (a moving bar), like the reporter's overlay."""
    w, h = size
    img = np.full((h, w, 3), background, np.uint8)
    x = (seq * 17) % w
    img[:, x:x + 12] = (0, 200, 255)
    cv2.putText(img, f"frame {seq}", (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def update_header(session: str, seq: int, levels: dict[int, int], t_capture: float | None = None,
                  frames: int | None = None, stream: str = "cam0", streams: dict | None = None) -> dict:
    """An update as the reporter forwards it: totals, predictions with the baseline's signals."""
    preds = [{"student": s, "box": [10.0 * s, 10.0, 50.0, 50.0], "level": lv,
              "probs": [0.7 if i == lv else 0.1 for i in range(4)],
              "signals": {"yaw": 5.0 * s, "pitch": -3.0, "eye_openness": 0.3, "score": 0.1, "reason": "yaw"}}
             for s, lv in sorted(levels.items())]
    counts = {str(i): sum(lv == i for lv in levels.values()) for i in range(4)}
    totals = {"frames": frames or seq + 1, "frames_without_faces": 0, "faces": len(levels),
              "predictions": len(levels), "levels": counts, **({"streams": streams} if streams else {})}
    return make_header("update", session, stream, seq, t_capture or time.time(), totals=totals,
                       predictions=preds, faces=[], model=MODEL, t_media=None)


class LiveLink:
    """The reporter's side of the live link: a bound PUB socket."""

    def __init__(self) -> None:
        (self.port,) = free_ports(1)
        self.socket = zmq.Context.instance().socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(f"tcp://127.0.0.1:{self.port}")
        self.spec = f"sub+connect:tcp://127.0.0.1:{self.port}"

    def update(self, session: str, seq: int, levels: dict[int, int], **kw) -> dict:
        header = update_header(session, seq, levels, **kw)
        self.socket.send_multipart(encode(header))
        return header

    def frame(self, session: str, seq: int, payload: bytes | None = None, t_capture: float | None = None,
              stream: str = "cam0") -> None:
        data = payload if payload is not None else jpeg(seq)
        header = make_header("frame", session, stream, seq, t_capture or time.time(), width=320, height=240,
                             encoding="jpeg")
        self.socket.send_multipart(encode(header, data))

    def eos(self, session: str) -> None:
        self.socket.send_multipart(encode(make_header("eos", session, "cam0", 0, time.time(),
                                                      reason="report_written")))

    def close(self) -> None:
        self.socket.close()


class WebProcess:
    """`engagement web` as its own process; `url`, `metrics` and a stop that checks the exit."""

    def __init__(self, report_dir: Path, live_in: str = "", env: dict[str, str] | None = None,
                 prefix: str | None = None) -> None:
        self.port, self.metrics_port = free_ports(2)
        self.prefix = prefix or f"webtest-{uuid.uuid4().hex[:8]}"
        self.own_prefix = prefix is None  # its keys are deleted when it stops
        self.report_dir = report_dir
        self.env = {**os.environ, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": self.prefix,
                    "METRICS_PORT": str(self.metrics_port), "LIVE_IN": live_in, "PYTHONUNBUFFERED": "1", **(env or {})}
        if env and "WEB_PORT" in env:  # a test that sets the port itself
            self.port = int(env["WEB_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> WebProcess:
        # The documented command: `engagement web --report-dir DIR --port N`.
        self.proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "web",
                                      "--report-dir", str(self.report_dir),
                                      "--port", str(self.port)], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if wait:
            deadline = time.monotonic() + 30
            while True:
                assert self.proc.poll() is None, f"web exited: {self.proc.communicate()}"
                assert time.monotonic() < deadline, "web not healthy in 30 s"
                try:
                    if httpx.get(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        return self

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).text
        total = 0.0
        for line in text.splitlines():
            m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
            if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def stop(self) -> tuple[int, str, str]:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        out, err = self.proc.communicate(timeout=20)
        if self.own_prefix:
            delete_prefix(self.prefix)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.communicate(timeout=10)


class Launcher:
    """`engagement run` as a process; its stdout lines collected on a thread."""

    def __init__(self, source: str, report_dir: Path, web_port: int, *extra: str,
                 env: dict[str, str] | None = None, redis_url: str | None = REDIS_URL) -> None:
        # redis_url None: no REDIS_URL at all, so `engagement run` starts its private Redis (the default).
        base = {k: v for k, v in os.environ.items() if not (redis_url is None and k == "REDIS_URL")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engagement.cli", "run", "--source", source, "--report-dir", str(report_dir),
             *(["--redis-url", redis_url] if redis_url else []), "--web-port", str(web_port), *extra],
            env={**base, "REALTIME": "1", **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def live_url(self) -> str:
        def found():
            assert self.proc.poll() is None, "\n".join(self.lines[-30:])
            return next((ln.split("live: ", 1)[1] for ln in self.lines if ln.startswith("live: ")), None)
        return poll_value(found, 120, 0.1, "the `live:` line")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


def poll_value(predicate, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    """The predicate's first true answer (tests/support/waiting.wait_for only says it came)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met in {timeout} s"
        time.sleep(interval)




def wait_js(page, expression: str, timeout: float) -> None:
    """Poll a JavaScript condition (wait_for_function evaluates strings, which the page's CSP forbids).
    While a click's navigation is under way the old document is gone and the new one may have no
    body yet (a CI run: "Cannot read properties of null (reading 'dataset')"): such an error counts
    as "not yet", and the last one is named if the condition never comes."""
    from playwright.sync_api import Error as PlaywrightError

    last_error: list[str] = []

    def holds() -> bool:
        try:
            return page.evaluate(f"() => Boolean({expression})")
        except PlaywrightError as error:
            last_error[:] = [str(error).splitlines()[0]]
            return False

    try:
        poll_value(holds, timeout, 0.1, expression)
    except AssertionError as missed:
        raise AssertionError(f"{missed} (last error: {last_error[0]})" if last_error else str(missed)) from None
