"""extract and faces: FFmpeg on real .avi files, reference layout, resume, bad videos skipped and listed."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import cv2
import pytest

from training.cli import main
from training.extract import extract
from training.labels import load_splits
from training.manifest import fps_root, read_manifest


def test_extract_writes_reference_layout(synth_root: Path, frames_root: Path) -> None:
    root = fps_root(frames_root, 1)
    rows = read_manifest(root / "manifest.csv")
    splits = load_splits(synth_root)
    labels = {c.clip_id: c.levels for clips in splits.values() for c in clips}
    per_clip = Counter(r.clip for r in rows)
    assert set(per_clip) == set(labels)
    assert set(per_clip.values()) == {10}  # 10 s at 1 FPS
    for row in rows:
        assert row.levels == labels[row.clip]  # all four labels travel with every frame
        linked = root / "data" / row.split / f"b{row.boredom}" / Path(row.path).name
        assert linked.is_file() and (root / row.path).is_file()
    image = cv2.imread(str(root / rows[0].path))
    assert image.shape == (240, 320, 3)


def test_extract_resumes_without_redoing_clips(synth_root: Path, frames_root: Path) -> None:
    result = extract(synth_root, frames_root, fps=1, progress=False)
    assert result.extracted == [] and len(result.resumed) == 63 and result.frames == 630


def test_bad_videos_are_skipped_and_listed(synth_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "daisee"
    good = sorted((synth_root / "DataSet" / "Train").glob("*/*/*.avi"))[:2]
    lines = ["ClipID,Boredom,Engagement,Confusion,Frustration"]
    for video in good:
        dst = data / "DataSet" / "Train" / video.parent.parent.name / video.stem / video.name
        dst.parent.mkdir(parents=True)
        shutil.copy(video, dst)
        lines.append(f"{video.name},1,2,0,0")
    corrupt = data / "DataSet" / "Train" / "990001" / "9900011001" / "9900011001.avi"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(range(256)) * 40)
    lines.append("9900011001.avi,0,3,0,0")
    unlabelled = data / "DataSet" / "Train" / "990002" / "9900021001" / "9900021001.avi"
    unlabelled.parent.mkdir(parents=True)
    shutil.copy(good[0], unlabelled)
    lines.append("9900031001.avi,2,1,0,0")  # labelled, but no video
    (data / "Labels").mkdir(parents=True)
    (data / "Labels" / "TrainLabels.csv").write_text("\n".join(lines) + "\n")
    for split in ("Validation", "Test"):
        (data / "Labels" / f"{split}Labels.csv").write_text(lines[0] + "\n")

    result = extract(data, tmp_path / "frames", fps=2, progress=False)

    assert sorted(result.extracted) == sorted(v.stem for v in good)
    assert result.frames == 40  # two good clips, 10 s at 2 FPS
    with (tmp_path / "frames" / "2FPS" / "skipped.csv").open() as fh:
        skipped = {r["clip"]: r["reason"] for r in csv.DictReader(fh)}
    assert set(skipped) == {"9900011001", "9900021001", "9900031001"}
    assert "ffmpeg" in skipped["9900011001"]
    assert "without a label" in skipped["9900021001"] and "no video" in skipped["9900031001"]


def test_faces_table_per_split_and_detector(faces_root: Path, capsys: pytest.CaptureFixture) -> None:
    # dnn is cropped by the fixture (resumed here); haar runs for real.
    assert main(["--no-progress", "faces", "--out", str(faces_root), "--fps", "1", "--detector", "dnn", "haar"]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = {(line.split()[0], line.split()[1]): [float(v) for v in line.split()[2:]] for line in table[1:]}
    assert set(rows) == {(d, s) for d in ("dnn", "haar") for s in ("Train", "Validation", "Test", "all")}
    assert rows[("dnn", "all")][0] == 630
    assert rows[("dnn", "all")][2] > 80  # res10 finds the synthetic students' faces
    root = fps_root(faces_root, 1)
    crops = read_manifest(root / "faces" / "dnn" / "manifest.csv")
    assert len(crops) == rows[("dnn", "all")][1]
    assert cv2.imread(str(root / crops[0].path)).shape == (224, 224, 3)  # CROP_SIZE, as the edge cuts
