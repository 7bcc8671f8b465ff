"""The call tiles' names facedetect keeps in Redis for a session (shared/data/roster.py TileNames)."""

from __future__ import annotations

from shared.data.roster import TileNames


def test_the_names_of_every_stream_come_back_in_one_read_and_a_stream_without_any_gives_none(store):
    names = TileNames(store.r, store.prefix)
    names.save("call", "screen1", {1: "Ada Lovelace", 2: "Alan Turing"})
    names.save("call", "screen2", {1: "Grace Hopper"})
    names.save("call", "screen2", {})  # nothing read on a frame: what was saved stays
    names.save("other", "screen1", {1: "Not this class"})
    assert names.load("call", ["screen1", "screen2", "cam"]) == {
        ("screen1", 1): "Ada Lovelace", ("screen1", 2): "Alan Turing", ("screen2", 1): "Grace Hopper"}
    assert names.load("call", []) == {}
    assert names.load("nobody", ["screen1"]) == {}
