"""shared/data/report_doc.py: report files written the old way (a dict, `json.dumps(indent=1)`) load
into the typed Report and encode back to the same bytes; the new writer writes those same files."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import msgspec
import pytest

from services.reporter.report import build_report, mqtt_body, render_text
from shared.data.report_doc import UNSET, Report, ReportError, StoreSection, load_report, report_json, to_dict
from shared.data.roster import with_names
from shared.data.totals import Store
from tests.shared.data.reports.make_old_reports import T0, fill, marks

OLD = Path(__file__).parent / "data" / "reports"
FILES = sorted(OLD.glob("*.json"))


def test_the_old_files_are_all_here():
    # class-level, MQTT body with `omitted`, one stream named with store and recording,
    # two streams with states, tile names, recordings and a refilled-Redis store
    assert {p.stem for p in FILES} == {"class-level", "mqtt-omitted", "one-stream-named", "two-streams-states"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_an_old_file_loads_and_encodes_to_the_same_bytes(path: Path):
    text = path.read_text()
    for source in (path, str(path), path.read_bytes()):
        report = load_report(source)
        assert isinstance(report, Report)
        assert json.loads(report_json(report)) == json.loads(text)
        assert report_json(report) + "\n" == text  # same keys, same order, same numbers
        assert list(to_dict(report)) == list(json.loads(text))


def test_keys_the_old_dict_left_out_stay_out():
    one = load_report(OLD / "one-stream-named.json")
    ada, other = one.students
    assert ada.name == "Ada Lovelace" and other.name is UNSET and "name" not in to_dict(other)
    assert one.omitted is UNSET and one.recordings is UNSET and one.recording == "/recordings/one.mp4"
    assert isinstance(one.store, StoreSection) and one.store.resets is UNSET and one.store.frames == 8
    entry = one.timeline[0]
    assert entry.box == [10, 20, 64, 64] and entry.states is UNSET and "states" not in to_dict(entry)
    mqtt = load_report(OLD / "mqtt-omitted.json")
    assert mqtt.omitted == ["timeline", "class_timeline", "episodes"] and mqtt.store is UNSET
    assert "store" not in to_dict(mqtt) and list(to_dict(mqtt))[-1] == "omitted"
    two = load_report(OLD / "two-streams-states.json")
    assert two.generated_at is None and "generated_at" in to_dict(two)  # None is written, UNSET is not
    assert two.timeline[0].t_media is None and two.totals.states is not UNSET


@pytest.mark.parametrize("bad", [b"{}", b"[1]", b'{"schema": "one"}', b"not json"])
def test_what_is_not_a_report_says_so_in_one_line(bad: bytes):
    with pytest.raises((ReportError, msgspec.DecodeError)) as err:
        load_report(bad)
    assert "\n" not in str(err.value)


def _same_marks(new: dict, old: dict) -> dict:
    """Mark ids and creation times are Redis's and the clock's: taken from the old file."""
    for mine, theirs in zip(new["marks"], old["marks"], strict=True):
        mine["id"], mine["created_at"] = theirs["id"], theirs["created_at"]
    return new


def test_the_new_writer_writes_the_old_files(redis_url: str):
    """The reporter's steps (service.write_report) on the same classes give the fixtures' JSON."""
    store = Store.from_url(redis_url, prefix=f"test-doc-{uuid.uuid4().hex[:10]}")
    try:
        fill(store, "one", ["cam0"])
        one = build_report(store.load_session("one"), generated_at=T0 + 101, marks=marks(store, "one"))
        one.store = msgspec.convert({"source": "journal", "journal": "/var/journal/one.jsonl", "frames": 8,
                                     "why": "Redis gone", "missing": ["the teacher's marks"],
                                     "note": "written from the aggregator's journal"}, StoreSection)
        one.recording = "/recordings/one.mp4"
        fill(store, "two", ["cam0", "cam1"], states=True, live=True)
        two = build_report(store.load_session("two"), generated_at=None, marks=marks(store, "two"))
        two.store = StoreSection(source="redis", resets=1, refilled_frames=4, missing=[], note="Redis lost it")
        for st in two.streams:
            two.recordings = {**(two.recordings or {}), st.stream: f"/recordings/two-{st.stream}.mp4"}
            st.recording = two.recordings[st.stream]
        new = {"one-stream-named": with_names(one, {("", 1): "Ada Lovelace"}),
               "two-streams-states": with_names(two, {("cam1", 1): "Ben"}, {("cam0", 2): "Tile Cat"}),
               "class-level": build_report(store.load_session("two"), class_level_only=True,
                                           marks=marks(store, "two")),
               "mqtt-omitted": mqtt_body(build_report(store.load_session("one")), limit=3000)}
        for name, report in new.items():
            old = json.loads((OLD / f"{name}.json").read_text())
            mine = json.loads(report_json(report))
            assert _same_marks(mine, old) == old, name
            assert list(mine) == list(old)
            assert render_text(report) == render_text(load_report(report_json(report).encode()))
    finally:
        keys = list(store.r.scan_iter(match=f"{store.prefix}:*", count=500))
        if keys:
            store.r.delete(*keys)
