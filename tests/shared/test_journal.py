"""The aggregator's journal (shared/data/journal.py) on a real disk and the real Redis: a report from the journal says
what a report from Redis says; Redis's marker tells a store that lost the session; cut lines and a full disk."""

from __future__ import annotations

import dataclasses
import json
import os
import random

from services.reporter.report import build_report
from shared.data.journal import Journal, find_journal, read_journal, session_from_journal
from shared.data.totals import FrameRecord
from tests.aggregator.harness import MODEL
from tests.support.disk import tmpfs

T0 = 1_700_000_000.0


def _frames(session: str, n: int, stream: str = "cam0", seed: int = 3) -> list[FrameRecord]:
    rng = random.Random(seed)
    out = []
    for seq in range(n):
        students = rng.sample(range(1, 5), rng.randrange(4))
        preds = [{"student": s, "level": rng.randrange(4), "probs": [0.1, 0.2, 0.3, 0.4], "box": [1, 2, 3, 4],
                  "conf": 0.9, "signals": {"yaw": 1.5}} for s in students]
        out.append(FrameRecord(session, "math-7", stream, seq, T0 + seq + (0.25 if stream != "cam0" else 0),
                               seq * 0.5, len(preds), preds, MODEL))
    return out


def test_a_report_from_the_journal_is_the_report_from_redis(tmp_path, store):
    session = "j-same"
    journal = Journal(tmp_path, session)
    frames = _frames(session, 30) + _frames(session, 12, "cam1", seed=5)
    for rec in frames:
        store.record_frame(rec)
        journal.append_frame(rec)
    journal.append_frame(frames[4])  # a resend is journaled again, and counted once
    for stream, ended in (("cam1", T0 + 20), ("cam0", T0 + 40)):
        store.end_stream(session, stream, ended, "end_of_file", ["cam0", "cam1"], "math-7", "a.mp4")
        journal.append_eos(stream, 99, ended, ended, "end_of_file", "a.mp4", "math-7")
    journal.close()
    contents = read_journal(find_journal(tmp_path, session))
    assert contents.ended(["cam0", "cam1"]) and contents.unreadable == 0 and len(contents.frames) == 42
    from_redis = build_report(store.load_session(session), generated_at=1.0)
    from_journal = build_report(session_from_journal(contents), generated_at=1.0)
    assert from_journal == from_redis
    # Counted, not kept: the reporter reads the frames again one at a time when it reports from the journal.
    counted = read_journal(find_journal(tmp_path, session), keep_frames=False)
    assert (counted.frames, counted.frame_count, counted.streams) == ([], 42, {"cam0", "cam1"})
    assert counted.prediction_count == sum(len(r.predictions) for r in frames) and counted.ended(["cam0", "cam1"])
    assert build_report(session_from_journal(counted), generated_at=1.0) == from_redis


def test_a_long_class_from_the_journal_is_its_report_from_redis_byte_for_byte(tmp_path, store, monkeypatch):
    """Past RAW_TIMELINE_AFTER predictions the journal's report keeps each entry's JSON (RawTimeline), as the
    report from Redis does: the file is byte for byte the one a short class's Structs make."""
    from services.reporter.report import raw_timeline  # noqa: PLC0415
    from shared.data import report_doc  # noqa: PLC0415
    from shared.data import totals as totals_module  # noqa: PLC0415
    from shared.data.timeline_columns import RawTimeline  # noqa: PLC0415

    session = "j-long"
    journal = Journal(tmp_path, session)
    frames = _frames(session, 30) + _frames(session, 12, "cam1", seed=5)
    for rec in frames:
        for p in rec.predictions:  # json.dumps writes it 4.8123257286607546e-05, msgspec 0.000048123257286607546
            p["probs"] = [0.2, 0.3, 0.49995187674271337, 4.8123257286607546e-05]
        store.record_frame(rec)
        journal.append_frame(rec)
    for stream, ended in (("cam1", T0 + 20), ("cam0", T0 + 40)):
        store.end_stream(session, stream, ended, "end_of_file", ["cam0", "cam1"], "math-7", "a.mp4")
        journal.append_eos(stream, 99, ended, ended, "end_of_file", "a.mp4", "math-7")
    journal.close()
    as_structs = build_report(store.load_session(session), generated_at=1.0)
    monkeypatch.setattr(totals_module, "RAW_TIMELINE_AFTER", 0)
    data = session_from_journal(read_journal(find_journal(tmp_path, session), keep_frames=False))
    raw = raw_timeline(data)
    assert isinstance(raw, RawTimeline) and len(raw) == len(as_structs.timeline) > 40
    from_raw = build_report(data, generated_at=1.0)
    assert from_raw.timeline == [] and raw.entries() == as_structs.timeline
    assert b"".join(report_doc.report_chunks(from_raw, raw.raw)) == report_doc.report_bytes(as_structs)


def test_a_reopened_journal_goes_on_numbering_and_a_cut_line_is_skipped(tmp_path):
    journal = Journal(tmp_path, "j-cut")
    frames = _frames("j-cut", 5)
    numbers = [journal.append_frame(rec) for rec in frames[:3]]
    journal.close()
    with journal.path.open("ab") as f:
        f.write(b'{"k":"frame","n":4,"r":{"sess')  # a crash mid-write
    again = Journal(tmp_path, "j-cut")  # a restarted aggregator
    assert again.id == journal.id and numbers == [1, 2, 3]
    assert again.append_frame(frames[3]) == 4
    again.close()
    contents = read_journal(again.path)
    # The cut line is skipped and said; what came after it is on a line of its own.
    assert contents.unreadable == 1 and [r.seq for _, r in contents.frames] == [0, 1, 2, 3]


def test_a_counted_read_says_what_a_whole_read_says_of_every_line(tmp_path):
    """read_journal(keep_frames=False) skips parsing the predictions: it must still count, refuse and number
    every kind of line as the whole read does."""
    journal = Journal(tmp_path, "j-count")
    frames = _frames("j-count", 6) + _frames("j-count", 3, "cam1", seed=4)
    for rec in frames:
        journal.append_frame(rec)
    journal.append_frame(frames[2])  # a resend: counted once
    journal.append_eos("cam1", 3, T0 + 3, T0 + 9, "end_of_file", "b.mp4", "math-7")
    journal.append_eos("cam1", 3, T0 + 3, T0 + 9, "end_of_file", "b.mp4", "math-7")  # a resent end: kept once
    journal.close()
    good = dataclasses.asdict(frames[0])
    del good["journal_n"]
    odd = [{"k": "frame", "n": 20, "r": {**good, "seq": 99, "extra": 1}},  # a field FrameRecord does not take
           {"k": "frame", "n": 21, "r": {k: v for k, v in good.items() if k != "faces"}},  # one it needs
           {"k": "frame", "n": 22, "r": {**good, "seq": 98, "predictions": "none"}},
           {"k": "frame", "n": 23, "r": {**good, "stream": ["cam0"], "seq": 97}},  # no stream a set can hold
           {"k": "frame", "r": {**good, "seq": 96}},  # no number
           {"k": "eos", "n": 24, "seq": 1},  # an end of no stream
           {"k": "eos", "n": 25, "stream": {"a": 1}},
           {"k": "note", "n": 26}, {"n": 27}, [1, 2], "frame"]
    with journal.path.open("ab") as f:
        f.write(b"".join(json.dumps(line).encode() + b"\n" for line in odd) + b'{"k":"frame","n":30,"r":{"se')
    whole, counted = read_journal(journal.path), read_journal(journal.path, keep_frames=False)
    assert counted.frames == [] and len(whole.frames) == whole.frame_count == 9
    same = ("id", "session", "eos", "unreadable", "last_n", "frame_count", "prediction_count", "streams")
    assert {k: getattr(counted, k) for k in same} == {k: getattr(whole, k) for k in same}
    assert whole.unreadable == len(odd) + 1  # every odd line, and the cut one
    assert whole.prediction_count == sum(len(r.predictions) for r in frames)


def test_redis_answers_each_write_with_its_marker_so_a_lost_session_shows(store):
    frames = _frames("j-mark", 4)
    assert [store.record_journaled_frame(rec, mark=n + 1).mark for n, rec in enumerate(frames[:3])] == [0, 1, 2]
    assert store.journal_mark("j-mark") == 3
    store.delete_session("j-mark")  # Redis came back empty
    assert store.record_journaled_frame(frames[3], mark=4).mark == 0  # lower than the 3 applied: lost
    assert store.record_journaled_frame(frames[0], mark=0).mark == -1  # no number: no marker


def test_a_full_disk_moves_the_journal_whole_to_the_fallback_folder(tmp_path):
    with tmpfs(tmp_path / "disk", "64k") as disk:
        fallback = tmp_path / "fallback"
        journal = Journal(disk, "j-full", fallback)
        frames = _frames("j-full", 400)
        for rec in frames:
            journal.append_frame(rec)
        journal.close()
        assert journal.moved and journal.path.is_relative_to(fallback)
        assert find_journal(disk, "j-full", fallback) == journal.path
        contents = read_journal(journal.path)
        assert [r.seq for _, r in contents.frames] == list(range(400)) and contents.unreadable == 0
        assert os.path.getsize(disk / "j-full" / "journal.jsonl") > 0  # what was there stays, for a reader


def test_a_frame_line_keeps_its_format_key_for_key(tmp_path):
    """The journal writes a record's fields without copying them first (services/aggregator's CPU): the
    line must stay what dataclasses.asdict wrote, every field but journal_n in their order, nested values whole."""
    rec = FrameRecord("j-format", "math-7", "cam1", 7, T0 + 0.125, None, 2,
                      [{"student": 2, "level": 3, "probs": [0.1, 0.2, 0.3, 0.4], "box": [1, 2, 3, 4], "conf": 0.9,
                        "signals": {"yaw": -1.5, "reason": "yaw"}, "heads": {"boredom": [0.7, 0.1, 0.1, 0.1]}}],
                      MODEL, journal_n=41)
    journal = Journal(tmp_path, "j-format")
    assert journal.append_frame(rec) == 1
    rec.predictions[0]["level"] = 0  # written at once: a later change to the record is not in the journal
    journal.close()
    line = journal.path.read_bytes().splitlines()[1]
    expected = {"k": "frame", "r": {k: v for k, v in dataclasses.asdict(rec).items() if k != "journal_n"}, "n": 1}
    expected["r"]["predictions"][0]["level"] = rec.predictions[0]["level"] = 3
    assert line == json.dumps(expected, separators=(",", ":")).encode()
    back = read_journal(journal.path).frames
    assert back == [(1, dataclasses.replace(rec, journal_n=1))]
