"""shared/data/running_totals.py: an update's totals carry their own stream's; a reader keeps the others."""

from __future__ import annotations

from shared.data.running_totals import Totals


def _t(predictions: int, streams: dict[str, int] | None = None) -> Totals:
    def one(n: int) -> dict:
        return {"frames": n, "frames_without_faces": 0, "faces": n, "predictions": n,
                "levels": {"0": n, "1": 0, "2": 0, "3": 0}}
    return Totals.of({**one(predictions), **({"streams": {k: one(v) for k, v in streams.items()}} if streams else {})})


def test_an_update_of_one_stream_keeps_the_streams_known_before_and_its_own_is_the_newest():
    known = _t(5, {"cam0": 3, "cam1": 2})
    later = _t(6, {"cam1": 3}).carried_forward(known)
    assert later.predictions == 6  # the session's own totals are the update's
    assert {k: v.predictions for k, v in (later.streams or {}).items()} == {"cam0": 3, "cam1": 3}
    again = _t(8, {"cam0": 5}).carried_forward(later)
    assert {k: v.predictions for k, v in (again.streams or {}).items()} == {"cam0": 5, "cam1": 3}


def test_nothing_known_or_one_stream_is_the_update_as_it_came():
    first = _t(1, {"cam0": 1})
    assert first.carried_forward(None) is first
    assert first.carried_forward(_t(0)) is first  # the session had one stream so far: no map to keep
    alone = _t(4)
    assert alone.carried_forward(_t(3, {"cam0": 3})) is alone  # one stream again (a new session): no map
    assert first.carried_forward(first) is first
