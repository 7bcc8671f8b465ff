"""The live page's benchmark: capture-to-page latency at 2 FPS, and what the web service costs.

The pipeline runs as `engagement run` does (bench/pipeline.py, the attention baseline,
REALTIME=1 at 2 FPS) on a video with N real faces in every frame, while

  - a real Chromium (Debian's, through Playwright) keeps the live page open: the page notes,
    for every pushed update, now minus the frame's capture time (`window.__latencies`);
  - an MJPEG reader takes the video stream: now minus each part's X-Capture-Time.

Both clocks are this machine's. Prints one table row per face count and writes the figures
as JSON. A benchmark, not a test: nothing is asserted about speed.

    engagement bench-web [--faces 1 30] [--seconds 30] [--out web-results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.arguments import out_refusal
from bench.pipeline import run_pipeline
from bench.stats import percentiles_ms
from bench.workload import VIDEO_FPS, make_faces_video
from shared.ops.command_parser import CommandParser

WARMUP_UPDATES = 3  # the first updates carry the start-up's queue
# res10 (dnn) sees a 640x480 frame at 300x300: 30 faces of ~40 px are too small for it
# (it finds none); the Haar cascade at full size finds about 25 of them.
MANY_FACES, MANY_FACES_DETECTOR = 9, "haar"


def _p95(values: list[float]) -> float | None:
    return round(float(np.percentile(np.asarray(values) * 1000, 95)), 1) if values else None


def _figures(values: list[float]) -> dict:
    return {**percentiles_ms(values), "p95": _p95(values)}


class PageWatcher(threading.Thread):
    """Chromium on the live page (Playwright's sync API stays on this one thread)."""

    def __init__(self, url_box: dict, done: threading.Event) -> None:
        super().__init__(name="page", daemon=True)
        self.url_box, self.done = url_box, done
        self.latencies: list[float] = []
        self.cards = 0
        self.error = ""

    def run(self) -> None:
        from playwright.sync_api import Error, sync_playwright

        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                page = browser.new_page()
                while not self.done.is_set():
                    url = self.url_box.get("url")
                    if url:
                        try:
                            page.goto(url, wait_until="domcontentloaded", timeout=2000)
                            break
                        except Error:
                            pass
                    time.sleep(0.2)
                while not self.done.is_set():
                    try:  # read as we go: the launcher stops the page with the pipeline
                        self.latencies = page.evaluate("window.__latencies || []")
                        self.cards = max(self.cards, page.evaluate("document.querySelectorAll('.card').length"))
                    except Error:
                        break
                    self.done.wait(1.0)
                browser.close()
        except Exception as exc:  # reported in the figures, the run goes on
            self.error = f"{type(exc).__name__}: {exc}"


class VideoWatcher(threading.Thread):
    """Reads the MJPEG stream and notes each part's age on arrival."""

    def __init__(self, url_box: dict, done: threading.Event) -> None:
        super().__init__(name="video", daemon=True)
        self.url_box, self.done = url_box, done
        self.latencies: list[float] = []

    def run(self) -> None:
        while not self.done.is_set():
            url = self.url_box.get("url")
            if url:
                try:
                    self._read(url + "api/live/video.mjpg")
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)

    def _read(self, url: str) -> None:
        with httpx.stream("GET", url, timeout=httpx.Timeout(5.0, read=30.0)) as r:
            buf = b""
            for chunk in r.iter_bytes():
                buf += chunk
                while True:
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end < 0:
                        break
                    headers = dict(line.split(": ", 1) for line in buf[:head_end].decode("latin-1").splitlines()[1:]
                                   if ": " in line)
                    length = int(headers.get("Content-Length", 0))
                    if len(buf) < head_end + 4 + length + 2:
                        break
                    self.latencies.append(time.time() - float(headers["X-Capture-Time"]))
                    buf = buf[head_end + 4 + length + 2:]
                if self.done.is_set():
                    return


def measure(faces: int, seconds: float, work: Path) -> dict:
    frames = int(seconds * VIDEO_FPS)
    video = make_faces_video(work / f"faces{faces}-{frames}.avi", faces, frames)
    url_box: dict = {}
    done = threading.Event()
    page, stream = PageWatcher(url_box, done), VideoWatcher(url_box, done)
    page.start()
    stream.start()

    def on_env(envs: dict[str, dict[str, str]]) -> None:
        url_box["url"] = f"http://127.0.0.1:{envs['web']['WEB_PORT']}/"

    try:
        env = {"DETECTOR": MANY_FACES_DETECTOR} if faces >= MANY_FACES else {}
        run = run_pipeline(video, "baseline", True, work, label=f"web_{faces}", on_env=on_env, extra_env=env)
    finally:
        done.set()
        page.join(15)
        stream.join(5)
    return {
        "faces": faces, "seconds": seconds, "detector": env.get("DETECTOR", "dnn"), "exit_code": run["exit_code"],
        "fps": run["fps"],
        "faces_per_frame": run["faces_per_frame"], "cards_on_page": page.cards, "page_error": page.error,
        "capture_to_page_ms": _figures(page.latencies[WARMUP_UPDATES:]),
        "capture_to_video_ms": _figures(stream.latencies[WARMUP_UPDATES:]),
        "capture_to_update_ms": run["latency_ms"]["capture_to_update"],
        "web_process": run["processes"].get("web"),
        "reporter_process": run["processes"].get("reporter"),
    }


def markdown(rows: list[dict]) -> str:
    lines = ["| faces | detector | faces/frame seen | cards | updates | capture->page p50 / p95 ms "
             "| video p50 / p95 ms "
             "| web CPU % of a core | web RSS MB (peak) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        page, vid, web = r["capture_to_page_ms"], r["capture_to_video_ms"], r["web_process"] or {}
        lines.append(f"| {r['faces']} | {r['detector']} | {r['faces_per_frame']} | {r['cards_on_page']} | {page['n']} "
                     f"| {page['p50']} / {page['p95']} | {vid['p50']} / {vid['p95']} "
                     f"| {web.get('cpu_percent')} | {web.get('rss_mb')} ({web.get('peak_rss_mb')}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(prog="engagement bench-web", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, nargs="+", default=[1, 30])
    p.add_argument("--seconds", type=float, default=30.0, help="length of each 2 FPS video")
    p.add_argument("--out", type=Path, default=Path("web-results.json"))
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "engagement-bench")
    args = p.parse_args(argv)
    if min(args.faces) < 0 or args.seconds <= 0:
        p.error("--faces must be at least 0 each, --seconds positive")
    if refusal := out_refusal(out=args.out):
        p.error(refusal)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    rows = [measure(n, args.seconds, args.work_dir) for n in args.faces]
    result = {"machine_load_average": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count(), "runs": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(rows))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
