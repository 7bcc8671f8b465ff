"""A session's timeline as columns: what a report computes from it, without an object an entry.

An hour of a 7x7 gallery is 352,800 predictions. As the report's TimelineEntry Structs they are
386 MB (1094 bytes each, most of it the baseline's signals); the reporter of an Orin Nano has
512 MB. The report needs only a few fields of each entry to compute its episodes, the class's
per-frame levels, the signals' reasons and where a teacher's mark falls: `TimelineColumns` holds
those as numpy arrays (about 45 bytes an entry). A long class's entries themselves stay the JSON
Redis holds (`RawTimeline`, about 360 bytes each), written into the report file as they are
(shared/data/report_doc.py `report_chunks`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType

from shared.data.report_doc import ReportError, TimelineEntry

# A long class: past this many timeline entries a report is read without an object an entry (the
# reporter's RawTimeline, the web's lean report). An hour of a 7x7 gallery is 352,800; 50,000 entries
# are the MQTT body's 4 MB at the least (110 bytes each), so the body leaves such a timeline out anyway.
LONG_TIMELINE = 50_000


class _Signals(msgspec.Struct):
    reason: Any = None  # the baseline's deciding signal; the other signals are skipped when decoding


class IndexedEntry(msgspec.Struct):
    """The fields of an entry the report (and the web's lean report of a long class) computes from; the
    rest of its JSON is skipped."""
    stream: str
    seq: int
    student: int
    level: int
    t_capture: float
    t_media: float | None
    signals: _Signals | UnsetType = UNSET


_INDEXED = msgspec.json.Decoder(IndexedEntry)
_ENTRY = msgspec.json.Decoder(TimelineEntry)


@dataclass(frozen=True)
class TimelineColumns:
    """One row an entry, in the timeline's order. `stream` and `reason` index `streams` (sorted, so that
    sorting by index sorts by name) and `reasons` (-1: no reason); `t_media` is NaN where it is None."""
    streams: list[str]
    reasons: list[str]
    stream: np.ndarray
    seq: np.ndarray
    student: np.ndarray
    level: np.ndarray
    t_capture: np.ndarray
    t_media: np.ndarray
    reason: np.ndarray

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def of(cls, entries: Iterable[TimelineEntry | IndexedEntry], chunk: int = 10_000) -> TimelineColumns:
        """The columns of `entries`, taken `chunk` at a time (a generator of decoded entries is never whole)."""
        stream_at: dict[str, int] = {}
        reason_at: dict[str, int] = {}
        parts: list[tuple[np.ndarray, ...]] = []
        it = iter(entries)
        while batch := list(itertools.islice(it, chunk)):
            codes = [-1 if (r := _reason(e)) is None else reason_at.setdefault(str(r), len(reason_at)) for e in batch]
            parts.append((
                np.array([stream_at.setdefault(e.stream, len(stream_at)) for e in batch], np.int32),
                np.array([e.seq for e in batch], np.int64),
                np.array([e.student for e in batch], np.int64),
                np.array([e.level for e in batch], np.int8),
                np.array([e.t_capture for e in batch], np.float64),
                np.array([np.nan if e.t_media is None else e.t_media for e in batch], np.float64),
                np.array(codes, np.int32),
            ))
        types = (np.int32, np.int64, np.int64, np.int8, np.float64, np.float64, np.int32)
        stream, seq, student, level, t_capture, t_media, reason = (
            np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, t) for k, t in enumerate(types))
        # Indexes in name order: sorting rows by stream index sorts them by stream name.
        streams, reasons = sorted(stream_at), sorted(reason_at)
        stream_order = np.array([streams.index(s) for s in stream_at], np.int32)
        reason_order = np.array([reasons.index(r) for r in reason_at] + [-1], np.int32)  # code -1 stays -1
        return cls(streams, reasons, stream_order[stream] if len(stream) else stream, seq, student, level, t_capture,
                   t_media, reason_order[reason])

    def taken(self, order: np.ndarray) -> TimelineColumns:
        """The rows in `order`."""
        return TimelineColumns(self.streams, self.reasons, self.stream[order], self.seq[order], self.student[order],
                               self.level[order], self.t_capture[order], self.t_media[order], self.reason[order])

    def media(self, i: int) -> float | None:
        value = float(self.t_media[i])
        return None if np.isnan(value) else value


def _reason(entry: TimelineEntry | IndexedEntry) -> Any:
    signals = entry.signals
    if signals is UNSET:
        return None
    return signals.reason if isinstance(signals, _Signals) else signals.get("reason")


class RawTimeline:
    """A long class's timeline as Redis holds it: each entry's JSON, sorted as the report's timeline is (by
    capture time, then seq, then student), and its columns. `entries()` gives the Structs (a short class's
    MQTT body carries them)."""

    def __init__(self, items: Iterable[bytes | str]) -> None:
        raw = [item.encode() if isinstance(item, str) else item for item in items]
        columns = TimelineColumns.of(_INDEXED.decode(item) for item in raw)
        order = np.lexsort((columns.student, columns.seq, columns.t_capture))
        self.raw: list[bytes] = [raw[i] for i in order.tolist()]
        self.columns = columns.taken(order)

    def __len__(self) -> int:
        return len(self.raw)

    def entries(self) -> list[TimelineEntry]:
        """The Structs, decoded straight from each entry's JSON (no dict of an entry made); ReportError if one
        is no entry."""
        try:
            return [_ENTRY.decode(item) for item in self.raw]
        except msgspec.ValidationError as exc:
            raise ReportError(f"not a report's timeline: {exc}") from exc


__all__ = ["IndexedEntry", "RawTimeline", "TimelineColumns"]
