"""Bad input 6, beyond the bus: video files and DAiSEE label files, fuzzed with hypothesis.

tests/training already pins the named cases (a missing column, levels 4/-1/1.5/high, a
corrupt clip, an unlabelled clip, a labelled clip without video); these properties cover
everything in between: whatever the label file holds, the reader returns clips whose four
levels are in 0-3 or raises LabelError (never another exception), and whatever bytes a
video file holds, capture's file source reads decodable frames or says why it cannot.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.capture.sources import FileSource, SourceError
from tests.reliability.harness import report_figures
from tools.sample_video import make_sample_video
from training.labels import LabelError, read_label_csv

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
HEADER = ["ClipID", "Boredom", "Engagement", "Confusion", "Frustration"]
_counts: dict[str, int] = {}


def _cell() -> st.SearchStrategy[str]:
    numbers = st.sampled_from(["0", "1", "2", "3", "4", "-1", "1.5", "3.0", "nan", "inf", "-inf", "1e400",
                               "", " ", "0x1", "NaN", "Infinity", "\x00", "３"])
    return st.one_of(numbers, st.text(max_size=6))


@st.composite
def label_files(draw) -> str:
    header = draw(st.one_of(st.just(HEADER), st.permutations(HEADER), st.lists(st.sampled_from(HEADER + ["x"]),
                                                                               max_size=6)))
    rows = draw(st.lists(st.lists(_cell(), min_size=0, max_size=7), max_size=6))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def test_label_csv_yields_levels_0_to_3_or_a_clear_error(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels")
    outcome = {"read": 0, "refused": 0}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(label_files())
    def one(text: str) -> None:
        path = folder / f"{uuid.uuid4().hex}.csv"
        path.write_text(text, encoding="utf-8")
        try:
            clips = read_label_csv(path, "Train")
        except LabelError as exc:
            assert str(path) in str(exc)  # the error names the file
            outcome["refused"] += 1
            return
        finally:
            path.unlink()
        assert all(len(c.levels) == 4 and all(v in (0, 1, 2, 3) for v in c.levels) for c in clips)
        outcome["read"] += 1

    one()
    report_figures("fuzz label-csv", examples=sum(outcome.values()), **outcome)


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> bytes:
    info = make_sample_video(tmp_path_factory.mktemp("v") / "v.avi", seconds=1.0, faces=1, fps=10.0)
    return Path(info["path"]).read_bytes()


@st.composite
def damaged(draw, video: bytes) -> bytes:
    how = draw(st.sampled_from(["truncate", "flip", "garbage", "splice"]))
    if how == "truncate":
        return video[: draw(st.integers(0, len(video) - 1))]
    if how == "garbage":
        return draw(st.binary(min_size=0, max_size=4096))
    data = bytearray(video)
    if how == "flip":
        for _ in range(draw(st.integers(1, 50))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    start = draw(st.integers(0, len(data) - 1))
    return bytes(data[:start] + draw(st.binary(min_size=1, max_size=2048)) + data[start:])


def test_damaged_video_files_give_frames_or_a_clear_source_error(small_video, tmp_path):
    outcome = {"unreadable": 0, "frames_read": 0, "corrupt_frames_counted": 0, "files": 0}

    @settings(max_examples=max(20, EXAMPLES // 5), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(damaged(small_video))
    def one(data: bytes) -> None:
        path = tmp_path / f"{uuid.uuid4().hex}.avi"
        path.write_bytes(data)
        outcome["files"] += 1
        try:
            source = FileSource(str(path))
        except SourceError as exc:
            assert str(path) in str(exc)
            outcome["unreadable"] += 1
            return
        finally:
            pass
        try:
            for _ in range(100):  # 1 s at 10 FPS: ten frames at most, bounded anyway
                frame = source.read()
                if frame is None:
                    break
                assert frame.image.size and frame.t_media >= 0
                outcome["frames_read"] += 1
            outcome["corrupt_frames_counted"] += source.corrupt
        finally:
            source.release()
            path.unlink()

    one()
    report_figures("fuzz video-file", examples=outcome["files"], **{k: v for k, v in outcome.items() if k != "files"})
