"""Every predictor (the attention baseline, a bundle on Keras, on LiteRT) offers the one interface
of services/inference/predictor.py, so the service never asks which kind it holds."""

from __future__ import annotations

import numpy as np
import pytest

from services.inference.service import load_model
from tests.inference.faces import astronaut_crop
from tests.inference.tiny_bundles import SEQUENCE_LENGTH, build


@pytest.fixture(scope="module")
def predictors(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    frame = build("frame", root / "frame", tflite=True)
    sequence = build("sequence", root / "sequence")
    return {"baseline": load_model("baseline", "auto", False, smoothing_seconds=1.5),
            "keras": load_model(str(frame), "keras", False),
            "tflite": load_model(str(frame), "tflite", False),
            "keras-sequence": load_model(str(sequence), "keras", False)}


@pytest.mark.parametrize("name", ["baseline", "keras", "tflite", "keras-sequence"])
def test_each_predictor_answers_every_student_through_the_same_members(predictors, name):
    p = predictors[name]
    length = p.card.sequence_length
    assert p.accepts(length) and isinstance(p.engine, str) and p.engine
    crop = astronaut_crop(96)
    crops = np.stack([np.stack([crop] * length), np.stack([crop[:, ::-1]] * length)])  # 2 students
    keys = [("s", "cam0", 1), ("s", "cam0", 2)]
    entries = p.predict_students(keys, np.ascontiguousarray(crops), 0.5)  # 0.5 s into the video
    assert len(entries) == 2
    for e in entries:
        assert len(e["probs"]) == 4 and abs(sum(e["probs"]) - 1) < 1e-3
        assert e["level"] == int(np.argmax(e["probs"]))
    assert p.evict_idle(3600.0) == 0  # seen just now: nobody is idle


def test_a_sequence_model_refuses_other_lengths_and_the_baseline_takes_any(predictors):
    assert not predictors["keras-sequence"].accepts(SEQUENCE_LENGTH + 1)
    assert not predictors["keras"].accepts(2)
    assert predictors["baseline"].accepts(7)


def test_only_the_baseline_keeps_per_student_state_and_forgets_it_at_the_end_of_a_stream(predictors):
    crop = astronaut_crop(96)[None, None]
    baseline = predictors["baseline"]
    baseline.predict_students([("t", "cam1", 5)], np.ascontiguousarray(crop))
    assert baseline.end_stream("t", "cam1") == 1 and baseline.end_stream("t", "cam1") == 0
    predictors["keras"].predict_students([("t", "cam1", 5)], np.ascontiguousarray(crop))
    assert predictors["keras"].end_stream("t", "cam1") == 0
