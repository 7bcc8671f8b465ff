"""The demo's class as a user runs it: `engagement make-sample`, `engagement run`, then
`engagement grade` against the sample's truth; and the session's four reports (text, JSON,
CSV, HTML) saying one thing.

One real class (two real faces, 20 s, the defaults, a private Redis) serves both tests.
The counts are cross-checked against the timeline itself, never against numbers written
here: whatever the rule decides (another change may improve it), the formats must agree.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.support.report_checks import MMSS, assert_reports_agree
from tests.support.runs import engagement


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("demo")
    made = engagement(folder, "make-sample", "--out", "class.avi", "--faces", "2")
    assert made.code == 0, made.err
    run = engagement(folder, "run", "--source", "class.avi", "--report-dir", "reports", timeout=240)
    assert run.code == 0, run.err[-3000:]
    js = folder / re.findall(r"^report: (\S+\.json)$", run.out, re.M)[-1]
    return {"folder": folder, "json": js, "report": json.loads(js.read_text()),
            "text": js.with_suffix(".txt").read_text(), "truth": json.loads((folder / "class.truth.json").read_text())}


def test_the_demo_ends_with_its_grade_against_the_truth(demo):
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert recipe.strip().splitlines()[-1].strip() == ".venv/bin/engagement grade $(DEMO_REPORTS) sample.truth.json"
    out = engagement(demo["folder"], "grade", "reports", "class.truth.json")
    assert out.code == 0, out.err
    graded = json.loads(engagement(demo["folder"], "grade", "reports", "class.truth.json", "--json").out)
    report, truth = demo["report"], demo["truth"]
    # Each prediction on the face whose box centre is nearest its own (the test's own matching).
    by_face: dict[int, list[dict]] = {f["face"]: [] for f in truth["faces"]}
    for e in report["timeline"]:
        nearest = min(truth["faces"], key=lambda f: math.dist(_centre(f["box"]), _centre(e["box"])))
        by_face[nearest["face"]].append(e)
    on_faces = {str(f): {str(k): n for k, n in sorted(Counter(e["student"] for e in es).items())}
                for f, es in by_face.items()}
    assert graded["students_on_faces"] == on_faces and graded["strangers"] == []
    # Ids that change faces (a swap after the faces come back) are said, not hidden.
    moved = any(sum(s in v for v in on_faces.values()) > 1 for v in on_faces.values() for s in v)
    assert ("students seen on more than one face" in out.out) == moved
    scripted = [(f["face"], s) for f in truth["faces"] for s in f["stretches"]]
    assert len(graded["stretches"]) == len(scripted) > 0
    # One line per scripted stretch with its scripted times in mm:ss, found or missed.
    for (face, s), g in zip(scripted, graded["stretches"], strict=True):
        line = next(ln for ln in out.out.splitlines() if f"face {face} {s['state']} " in ln)
        assert re.search(rf"scripted {MMSS}-{MMSS}, reported ", line), line
        assert line.lstrip().startswith("found" if g["found"] else "MISSED"), line
        mine = sorted(by_face[face], key=lambda e: e["t_media"])
        hits = [e for e in mine if s["start"] <= e["t_media"] <= s["end"] + graded["ease"] and e["level"] >= s["level"]]
        assert g["found"] == bool(hits) and g["at_level"] == len(hits)
        if s["level"] == 2 and not moved:  # one student per face: its runs are the report's own episodes
            episodes = [[e["start_media"], e["end_media"]] for e in report["episodes"]
                        if str(e["student"]) in on_faces[str(face)]
                        and e["start_media"] <= s["end"] + graded["ease"] and e["end_media"] >= s["start"]]
            assert g["reported"] == episodes, (g, report["episodes"])
    # Each time the faces leave the frame: a line per face, and "found" when no prediction fell inside.
    assert len(graded["absences"]) == len(truth["absent"]) * len(truth["faces"]) > 0
    for a in graded["absences"]:
        inside = [e for e in by_face[a["face"]] if a["start"] < e["t_media"] < a["end"]]
        assert a["found"] == (not inside)
        assert re.search(rf"face {a['face']} left the frame: scripted {MMSS}-{MMSS}, last prediction", out.out)
    assert graded["counted"] > 0 and re.search(r"agreement with the truth .*: \d+ of \d+ predictions \(\d+%\)",
                                               out.out)
    print(out.out)  # today's figures, for whoever reads the test's output


def _centre(box: list[int]) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def test_the_four_reports_say_one_thing(demo):
    assert demo["report"]["timeline"], "a class with faces has predictions"
    assert_reports_agree(demo["report"], demo["text"])
