"""The sample video is a real MJPG file that OpenCV (and ffmpeg, when installed) decodes."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tools.footage import read_video
from tools.sample_video import main, make_sample_video


def test_make_sample_cli_writes_a_decodable_640x480_video(tmp_path, capsys):
    out = tmp_path / "s.avi"
    assert main(["--out", str(out), "--seconds", "1", "--faces", "2", "--fps", "10"]) == 0
    assert "wrote" in capsys.readouterr().out
    frames, _ = read_video(out)
    assert len(frames) == 10 and frames[0].shape == (480, 640, 3)


def test_make_sample_video_reports_the_stretches_without_faces(tmp_path):
    info = make_sample_video(tmp_path / "s.avi", seconds=4.0, faces=1, fps=5.0)
    assert info["frames"] == 20 and len(info["present"]) == 20
    assert 0 < info["frames_with_faces"] < info["frames"]  # the face leaves the frame for a while
    assert sum(info["frames_with_faces_per_second"].values()) == info["frames_with_faces"]


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg not installed")
def test_ffmpeg_decodes_the_sample_too(tmp_path):
    info = make_sample_video(tmp_path / "s.avi", seconds=1.0, faces=1, fps=10.0)
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                          "-show_entries", "stream=codec_name,nb_read_frames,width,height", "-of", "csv=p=0",
                          info["path"]], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "mjpeg,640,480,10"
