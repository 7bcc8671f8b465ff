"""A multi-task bundle (four heads): every state is counted in Redis (session, class, student),
reaches the running totals, the JSON and text reports and the MQTT body. Real Redis (the
`store` fixture of tests/conftest.py)."""

from __future__ import annotations

import pytest

from services.reporter.report import build_report, mqtt_body, render_text
from shared.data.report_doc import to_dict
from shared.data.totals import FrameRecord, add_record, empty_totals, states_of

HEADS = ["boredom", "engagement", "confusion", "frustration"]
MODEL = {"name": "tiny-multitask", "kind": "multitask", "baseline": False, "affect": True,
         "labels": ["engaged", "slightly bored", "bored", "checked out"], "engine": "onnx", "device": "cpu"}


def one_hot(level: int) -> list[float]:
    return [0.7 if i == level else 0.1 for i in range(4)]


def prediction(student: int, levels: dict[str, int]) -> dict:
    heads = {h: one_hot(levels[h]) for h in HEADS}
    return {"student": student, "level": levels["boredom"], "probs": heads["boredom"], "heads": heads}


# (student, {head: level}) per frame
FRAMES = [
    [(1, {"boredom": 0, "engagement": 1, "confusion": 2, "frustration": 3})],
    [(1, {"boredom": 2, "engagement": 1, "confusion": 2, "frustration": 0}),
     (2, {"boredom": 3, "engagement": 3, "confusion": 0, "frustration": 0})],
]


def _records(session: str) -> list[FrameRecord]:
    return [FrameRecord(session, "math", "cam0", seq, 1_700_000_000.0 + seq, seq * 0.5, len(preds),
                        [prediction(s, lv) for s, lv in preds], MODEL) for seq, preds in enumerate(FRAMES)]


def test_every_state_counted_in_redis_and_locally_alike(store):
    local = empty_totals()
    for rec in _records("mt"):
        counted, totals = store.record_frame(rec)
        assert counted
        local = add_record(local, rec)
    assert totals == local == store.session_totals("mt")  # Redis and the overlay's local copy agree
    assert totals["states"] == {
        "boredom": {"0": 1, "1": 0, "2": 1, "3": 1},
        "engagement": {"0": 0, "1": 2, "2": 0, "3": 1},
        "confusion": {"0": 1, "1": 0, "2": 2, "3": 0},
        "frustration": {"0": 2, "1": 0, "2": 0, "3": 1},
    }
    assert totals["levels"] == totals["states"]["boredom"]  # the primary head is still the level
    assert store.class_totals("math")["states"] == totals["states"]
    (s1, s2) = store.students("mt")
    assert s1["states"]["frustration"] == {"0": 1, "1": 0, "2": 0, "3": 1}
    assert s2["states"]["engagement"] == {"0": 0, "1": 0, "2": 0, "3": 1}
    assert [e["states"]["confusion"] for e in store.timeline("mt")] == [2, 2, 0]


def test_one_head_models_have_no_states(store):
    rec = FrameRecord("one", "math", "cam0", 0, 1.0, 0.0, 1, [{"student": 1, "level": 2, "probs": one_hot(2)}], MODEL)
    _, totals = store.record_frame(rec)
    assert "states" not in totals and "states" not in add_record(empty_totals(), rec)
    assert states_of({"level": 1}) == {}


def test_report_json_text_and_mqtt_carry_all_four_states(store):
    for rec in _records("rep"):
        store.record_frame(rec)
    store.end_session("rep", 1_700_000_100.0, "end_of_file")
    report = build_report(store.load_session("rep"))
    doc = to_dict(report)
    assert list(doc["totals"]["states"]) == HEADS
    assert doc["totals"]["states_percent"]["frustration"]["0"] == pytest.approx(66.7)
    assert doc["students"][0]["states"]["confusion"] == {"0": 0, "1": 0, "2": 2, "3": 0}
    text = render_text(report)
    assert "Every state (multi-task model):" in text
    assert "  frustration: level 0 2 (66.7%), level 1 0 (0.0%), level 2 0 (0.0%), level 3 1 (33.3%)" in text
    assert "    confusion: level 0 0 (0.0%), level 1 0 (0.0%), level 2 2 (100.0%), level 3 0 (0.0%)" in text
    assert to_dict(mqtt_body(report))["totals"]["states"] == doc["totals"]["states"]
    assert "states" in to_dict(build_report(store.load_session("rep"), class_level_only=True))["totals"]
