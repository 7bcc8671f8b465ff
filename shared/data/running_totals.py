"""A session's running totals as the update message carries them: one typed structure.

The aggregator counts in Redis (shared/data/totals.py, which keeps the map of the report and
the stores); each update carries the totals after its frame, read by the reporter's overlay,
its MQTT totals and the web page. On the wire they are the same msgpack map as before, key for
key and in the same order: the four counts, `levels`, then `states` (a multi-task model only)
and `streams` (several cameras only), absent rather than empty. An update's `streams` holds its
own stream's totals (every stream's when a stream first appears): a reader keeps the others from
the updates before (`carried_forward`); each stream's entry is its whole running totals, so an
update a reader missed costs it nothing once that stream's next one comes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from shared.data.levels import LEVELS

Counts = dict[str, int]  # level ("0".."3") -> predictions


class Totals(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Frames, faces and predictions so far, and predictions by level (and by stream)."""

    frames: int
    frames_without_faces: int
    faces: int
    predictions: int
    levels: Counts
    states: dict[str, Counts] | None = None  # every head's levels (a multi-task model)
    streams: dict[str, Totals] | None = None  # each stream's own totals (several cameras)

    @classmethod
    def of(cls, totals: Mapping[str, Any]) -> Totals:
        """The Struct of a totals map (shared/data/totals.py); ValidationError if it is not one."""
        return msgspec.convert(totals, cls)

    def as_map(self) -> dict[str, Any]:
        """The plain map (the MQTT totals, the web page's JSON): the wire's keys, no Nones."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    def carried_forward(self, earlier: Totals | None) -> Totals:
        """These totals (an update's) with the streams `earlier` knew that this update does not carry. The
        map of `earlier` is updated in place and kept: a frame costs its own streams, not every stream."""
        if not self.streams or earlier is None or not earlier.streams or earlier.streams is self.streams:
            return self
        known = earlier.streams
        known.update(self.streams)
        return msgspec.structs.replace(self, streams=known)

    def stream(self, stream: str) -> Totals:
        """`stream`'s own totals when there are several, else the session's."""
        return (self.streams or {}).get(stream) or self


def no_totals() -> Totals:
    """Nothing counted yet."""
    return Totals(frames=0, frames_without_faces=0, faces=0, predictions=0,
                  levels={str(i): 0 for i in range(LEVELS)})
