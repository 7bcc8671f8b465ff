"""labels: tolerant reading, clear errors on bad files, person-disjoint splits, the distribution table."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from training.cli import main
from training.labels import LabelError, load_splits, read_label_csv


def _boredom_counts(path: Path) -> list[int]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return [sum(1 for r in rows if int(r[1]) == level) for level in range(4)]


def test_synth_has_daisee_layout_and_quirks(synth_root: Path) -> None:
    header = (synth_root / "Labels" / "TrainLabels.csv").read_bytes().split(b"\n")[0]
    assert header == b"ClipID,Boredom,Engagement,Confusion,Frustration \r"  # trailing space, CRLF
    for split in ("Train", "Validation", "Test", "All"):
        assert (synth_root / "Labels" / f"{split}Labels.csv").is_file()
    videos = sorted((synth_root / "DataSet").glob("*/*/*/*.avi"))
    assert len(videos) == 63
    for video in videos:  # DataSet/<Split>/<Person>/<Clip>/<Clip>.avi
        assert video.stem == video.parent.name and video.stem.startswith(video.parent.parent.name)
        assert video.read_bytes()[:4] == b"RIFF"  # a real AVI container
    splits = load_splits(synth_root)
    persons = [{c.person for c in clips} for clips in splits.values()]
    assert [len(p) for p in persons] == [6, 1, 2]
    assert not (persons[0] & persons[1] or persons[0] & persons[2] or persons[1] & persons[2])


def test_labels_prints_distribution_table(synth_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["labels", "--data", str(synth_root)]) == 0
    out = capsys.readouterr().out
    counts = _boredom_counts(synth_root / "Labels" / "AllLabels.csv")
    total = sum(counts)
    expected = f"{'boredom':<12}" + "".join(f"{c:>7}" for c in counts) + f"{total:>8}"
    assert expected in out
    pct0 = 100.0 * counts[0] / total
    assert 35 < pct0 < 50  # DAiSEE-like share of level 0
    assert f"{pct0:>7.1f}" in out.split("All:")[1].splitlines()[2]
    assert "no person appears in two splits" in out


def test_labels_detects_person_in_two_splits(synth_root: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    shutil.copytree(synth_root / "Labels", tmp_path / "Labels")
    test_line = (tmp_path / "Labels" / "TestLabels.csv").read_text().splitlines()[1]
    with (tmp_path / "Labels" / "TrainLabels.csv").open("a") as fh:
        fh.write(test_line + "\r\n")
    assert main(["labels", "--data", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "ERROR: persons in more than one split" in out
    assert test_line[:6] in out


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "TrainLabels.csv", "ClipID,Boredom,Engagement,Confusion\n1100011002.avi,0,1,2\n")
    with pytest.raises(LabelError, match=r"missing columns \['frustration'\]"):
        read_label_csv(path, "Train")


@pytest.mark.parametrize("value", ["4", "-1", "1.5", "high"])
def test_level_outside_0_to_3_is_a_clear_error(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path / "TrainLabels.csv",
                  f"ClipID,Boredom,Engagement,Confusion,Frustration\n1100011002.avi,0,1,2,0\n1100011003.avi,{value},1,2,0\n")
    with pytest.raises(LabelError, match=r"TrainLabels.csv:3: boredom of 1100011003"):
        read_label_csv(path, "Train")


def test_quirky_header_and_extensions_are_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "TrainLabels.csv",
                  "\ufeffClipID , Boredom,Engagement,Confusion,Frustration \r\n1100011002.avi,3,0,1,2\r\n"
                  "1100011003.mp4,0,3,0,0\r\n\r\n")
    clips = read_label_csv(path, "Train")
    assert [(c.clip_id, c.person, c.levels) for c in clips] == [
        ("1100011002", "110001", (3, 0, 1, 2)), ("1100011003", "110001", (0, 3, 0, 0))]


def test_cli_reports_bad_labels_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "Labels").mkdir()
    for split in ("Train", "Validation", "Test"):
        _write(tmp_path / "Labels" / f"{split}Labels.csv", "ClipID,Boredom\n1100011002.avi,0\n")
    assert main(["labels", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err  # the CLI logs one line to stderr, no traceback
    assert "labels failed" in err and "missing columns" in err and "Traceback" not in err
