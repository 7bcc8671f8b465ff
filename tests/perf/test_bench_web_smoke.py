"""`engagement bench-web` runs end to end and writes its figures (nothing about speed)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_web_writes_latency_and_cost(tmp_path):
    out = tmp_path / "web.json"
    done = subprocess.run([sys.executable, "-m", "engagement.cli", "bench-web", "--faces", "1", "--seconds", "6",
                           "--out", str(out), "--work-dir", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [run] = json.loads(out.read_text())["runs"]
    assert run["exit_code"] == 0 and run["cards_on_page"] == 1 and not run["page_error"]
    assert run["capture_to_page_ms"]["n"] > 0 and run["capture_to_video_ms"]["n"] > 0
    assert run["web_process"]["rss_mb"] > 0
    assert "capture->page" in done.stdout
