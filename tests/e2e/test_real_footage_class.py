"""`engagement run` on real recordings of real people (tests/inference/real_footage.py), read against the
hand labels: every stage for real (the decoded H.264 file at its own shape, the default detector, the
tracker, the face mesh, Redis, the report). A person facing the camera reads attentive."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.inference import real_footage
from tests.support.pipeline import launcher_command

pytestmark = pytest.mark.timeout(400)


def _report(tmp_path: Path, name: str) -> dict:
    try:
        video = real_footage.fetch(name)
    except real_footage.FootageUnavailable as exc:
        pytest.skip(str(exc))
    command = launcher_command(str(video), tmp_path / "reports", "--session-id", f"real-{uuid.uuid4().hex[:8]}")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    js = [line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("report: ")][-1]
    return json.loads(Path(js).read_text())


@pytest.mark.parametrize("name", ["actress", pytest.param("desk", marks=pytest.mark.slow),
                                  pytest.param("conversation", marks=pytest.mark.slow)])
def test_a_real_person_facing_the_camera_reads_attentive_through_the_pipeline(tmp_path, name):
    report = _report(tmp_path, name)
    assert len(report["students"]) == 1, report["students"]
    by_label: dict[str, list[int]] = {}
    for entry in report["timeline"]:
        by_label.setdefault(real_footage.label_at(name, entry["t_media"] + 1e-6), []).append(entry["level"])
    facing = by_label["facing"]
    share = sum(level == 0 for level in facing) / len(facing)
    print(f"{name} through `engagement run`: level 0 on {share:.0%} of {len(facing)} facing frames")
    assert len(facing) >= 0.9 * sum(label == "facing" for label in real_footage.labels()[name].values()) * 2
    assert share >= 0.70
    assert all(level <= 1 for level in by_label.get("down", []))
    if "eyes_shut" in by_label:
        assert sum(level >= 2 for level in by_label["eyes_shut"]) >= 4
