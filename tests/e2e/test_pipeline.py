"""The whole pipeline as real processes on a real video with a real face.

The predictions link (inference -> aggregator) is routed through a counting proxy owned by
the test, so the report's totals are checked against what inference actually published,
not against the aggregator's own bookkeeping.
"""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from pathlib import Path

from bench.taps import LinkTap
from services.launcher import main as launcher
from shared.bus.messages import Message
from tests.support.env import REDIS_URL
from tests.support.pipeline import sampled_frames, start_launcher


class PredictionsTap(LinkTap):
    """Counts what inference published, per frame, level and student."""

    def __init__(self) -> None:
        self.frames: set[int] = set()
        self.levels: Counter[int] = Counter()
        self.per_student: Counter[int] = Counter()
        self.eos = 0
        super().__init__("predictions", "inference", "aggregator")

    def on_message(self, msg: Message, arrived: float) -> None:
        # A resend of a frame already seen (inference retries until the aggregator acks) is
        # the same prediction: count each frame once.
        if msg.kind == "predictions" and msg.header.seq not in self.frames:
            self.frames.add(msg.header.seq)
            for p in msg.header.predictions:
                self.levels[p["level"]] += 1
                self.per_student[p["student"]] += 1
        elif msg.kind == "eos":
            self.eos += 1


def _run_with_tap(source: str, report_dir: Path, tap: PredictionsTap, *extra: str) -> int:
    args = launcher.build_parser().parse_args(
        ["--source", source, "--report-dir", str(report_dir), "--redis-url", REDIS_URL, *extra])
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return launcher.run(args, adjust_env=tap.rewire)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _only_report(report_dir: Path) -> dict:
    [path] = list(report_dir.glob("*.json"))
    return json.loads(path.read_text())


def test_report_counts_every_published_prediction(sample_video, tmp_path):
    tap = PredictionsTap()
    try:
        code = _run_with_tap(sample_video["path"], tmp_path, tap)
    finally:
        tap.close()
    assert code == 0
    report = _only_report(tmp_path)
    totals = report["totals"]
    # Every sampled frame went through every stage (one predictions message per frame).
    assert len(tap.frames) == sampled_frames(sample_video) == totals["frames"]
    assert tap.eos == 1
    # The report's counts are exactly what inference published: per level and per student.
    assert sum(tap.levels.values()) == totals["predictions"] > 0
    assert {int(k): v for k, v in totals["levels"].items() if v} == dict(tap.levels)
    assert {int(s["student"]): s["predictions"] for s in report["students"]} == dict(tap.per_student)
    # One prediction per detected face per frame: one face, absent for part of the video.
    assert totals["predictions"] <= totals["frames"] - totals["frames_without_faces"]
    assert totals["frames_without_faces"] >= 1
    assert report["model"]["baseline"] is True


def test_engagement_run_prints_report_paths_and_sigterm_still_reports(sample_video, tmp_path):
    # Paced in wall-clock time (--realtime) so the launcher is stopped mid-stream.
    proc = start_launcher(sample_video["path"], tmp_path, {"REALTIME": "1"})
    try:
        # Wait until the services are up and a few frames have gone through.
        for line in proc.stderr:
            if "all services up" in line:
                break
        threading.Event().wait(3.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    # The run's last two lines name the text and JSON reports.
    paths = [line.split(" ", 1)[1] for line in out.splitlines()[-2:] if line.startswith("report: ")]
    assert [Path(p).suffix for p in paths] == [".txt", ".json"]
    report = json.loads(Path(paths[1]).read_text())
    assert 0 < report["totals"]["frames"] < sampled_frames(sample_video)
    assert Path(paths[0]).read_text().strip()
