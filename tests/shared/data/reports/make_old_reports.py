"""Writes this folder's report files with the reporter as it was before shared/data/report_doc.py
(the dict-building `build_report` and `json.dumps(report, indent=1)`): run once from a checkout of
that code (`cd <old checkout> && python <this file> <out dir>`), with Redis at 127.0.0.1:6379.

Kept so the fixtures can be made again; tests/shared/test_report_doc.py reads what it wrote.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from services.reporter.report import build_report, mqtt_body
from shared.data.marks import MarkStore, validate_mark
from shared.data.roster import with_names
from shared.data.totals import FrameRecord, Store
from tests.aggregator.harness import MODEL

T0 = 1_700_000_000.0
HEADS = ["boredom", "engagement", "confusion", "frustration"]


def _preds(seq: int, stream: str, states: bool) -> list[dict]:
    out = []
    for student in (1, 2) if stream == "cam0" else (1,):
        level = (seq + student) % 4
        p = {"student": student, "level": level, "probs": [0.1, 0.2, 0.3, 0.4], "box": [10, 20, 64, 64],
             "conf": 0.9731, "signals": {"yaw": 12.5, "pitch": -3.0, "reason": "yaw" if level else None}}
        if states:
            p["heads"] = {h: [1.0 if i == (level + k) % 4 else 0.0 for i in range(4)] for k, h in enumerate(HEADS)}
        out.append(p)
    return [] if seq == 2 else out


def fill(store: Store, session: str, streams: list[str], states: bool = False, live: bool = False) -> None:
    model = {**MODEL, "affect": states}
    for stream in streams:
        for seq in range(8):
            preds = _preds(seq, stream, states)
            store.record_frame(FrameRecord(session, "math-7", stream, seq, T0 + seq + (0.25 if stream == "cam1" else 0),
                                           None if live else seq * 0.5, len(preds), preds, model))
        store.end_stream(session, stream, T0 + 50, "end_of_file", streams, source=f"{stream}.mp4")
    store.end_session(session, T0 + 100, "end_of_file")
    store.r.hset(f"{store.prefix}:session:{session}:set_aside", mapping={"short_lived": 3, "min_seconds": 1.5})


def marks(store: Store, session: str) -> list:
    ms = MarkStore(store.r, prefix=store.prefix)
    for seq, given, predicted in ((4, 3, 3), (0, 1, None)):
        ms.add(validate_mark({"session": session, "student": 1, "t": T0 + seq + 0.1, "level_given": given,
                              "level_predicted": predicted, "signals": {"yaw": 40.0}}))
    return ms.for_session(session)


def main(out: Path) -> None:
    store = Store.from_url("redis://127.0.0.1:6379/0", prefix=f"oldreports-{uuid.uuid4().hex[:8]}")
    try:
        reports = {}
        fill(store, "one", ["cam0"])
        r = build_report(store.load_session("one"), generated_at=T0 + 101, marks=marks(store, "one"))
        r["store"] = {"source": "journal", "journal": "/var/journal/one.jsonl", "frames": 8, "why": "Redis gone",
                      "missing": ["the teacher's marks"], "note": "written from the aggregator's journal"}
        r["recording"] = "/recordings/one.mp4"
        reports["one-stream-named"] = with_names(r, {("", 1): "Ada Lovelace"})
        fill(store, "two", ["cam0", "cam1"], states=True, live=True)
        r = build_report(store.load_session("two"), generated_at=None, marks=marks(store, "two"))
        r["store"] = {"source": "redis", "resets": 1, "refilled_frames": 4, "missing": [], "note": "Redis lost it"}
        for st in r["streams"]:
            r.setdefault("recordings", {})[st["stream"]] = f"/recordings/two-{st['stream']}.mp4"
            st["recording"] = r["recordings"][st["stream"]]
        reports["two-streams-states"] = with_names(r, {("cam1", 1): "Ben"}, {("cam0", 2): "Tile Cat"})
        reports["class-level"] = build_report(store.load_session("two"), class_level_only=True,
                                              marks=marks(store, "two"))
        reports["mqtt-omitted"] = mqtt_body(build_report(store.load_session("one")), limit=3000)
        for name, report in reports.items():
            (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    finally:
        keys = list(store.r.scan_iter(match=f"{store.prefix}:*", count=500))
        if keys:
            store.r.delete(*keys)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
