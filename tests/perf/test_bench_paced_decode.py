"""`python -m bench.paced_decode`: every way of decoding writes its figure, from real decodes of a real-face
video (each stream's frames counted, in processes and in one process alike); never how fast they are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import paced_decode
from bench.workload import make_faces_video

ROOT = Path(__file__).resolve().parents[2]


def test_every_way_writes_its_figure_for_every_frame_due(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where the streams' links go
    video = make_faces_video(tmp_path / "webcam.avi", 1, 12, 2.0)
    assert paced_decode.main(["--streams", "3", "--seconds", "3", "--video", str(video)]) == 0
    out = json.loads(capsys.readouterr().out)
    figures = out["decode_ms_a_frame"]
    assert set(figures) == {"loop", "processes", "one_process"}
    assert all(isinstance(v, float) and v > 0 for v in figures.values()), figures
    # 3 s at 2 FPS: 6 frames a stream due, the first WARMUP left out of the figure.
    due = 3 * (6 - paced_decode.WARMUP)
    assert out["frames_counted"]["processes"] == out["frames_counted"]["one_process"] == due
    assert out["frames_counted"]["loop"] == 12 - paced_decode.WARMUP
    assert not list(tmp_path.glob("paced-decode-*")), "the streams' links are left behind"


@pytest.mark.parametrize("args, said", [
    (["--streams", "0"], "must be positive"),
    (["--video", "/nonexistent.avi"], "no such file"),
    (["--seconds", "x"], "invalid float value"),
])
def test_wrong_flags_get_one_line_and_exit_2(args, said):
    done = subprocess.run([sys.executable, "-m", "bench.paced_decode", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
