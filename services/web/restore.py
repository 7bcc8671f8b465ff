"""The live page of a class under way, rebuilt from Redis's timeline when the web starts mid-class.

A web restarted an hour into a 7x7 gallery's class read Redis's 352,800 timeline entries as dicts
(signals, boxes and all): 585 MB, and in its 512M (an AGX Orin's) it was killed, restarted and killed
again for the rest of the class. The live state needs of each entry its stream, student, level,
probabilities and capture time: those are decoded (the rest of each entry's JSON skipped) into columns,
about 70 bytes an entry, sorted as the state takes them, and handed over a row at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import msgspec
import numpy as np

from services.web.live import LiveRow

_ENTRY = msgspec.json.Decoder(LiveRow)


def live_rows(items: Iterable[str | bytes], chunk: int = 10_000) -> Iterator[LiveRow]:
    """Redis's timeline entries (their JSON, in any order) as rows sorted by capture time, then seq, student.
    `items` are read here, before the first row is asked for: a RedisError comes from this call, not from
    LiveState.load, which holds the pages' lock while it takes the rows."""
    return _rows(*_columns(items, chunk))


def _columns(items: Iterable[str | bytes], chunk: int) -> tuple[list[str], tuple[np.ndarray, ...]]:
    streams: dict[str, int] = {}
    parts: list[tuple[np.ndarray, ...]] = []
    it = iter(items)
    while batch := [_ENTRY.decode(item) for item in itertools.islice(it, chunk)]:
        parts.append((np.array([streams.setdefault(e.stream, len(streams)) for e in batch], np.int32),
                      np.array([e.seq for e in batch], np.int64), np.array([e.student for e in batch], np.int64),
                      np.array([e.level for e in batch], np.int8), np.array([e.t_capture for e in batch], np.float64),
                      np.array([len(e.probs) for e in batch], np.int64),
                      np.fromiter(itertools.chain.from_iterable(e.probs for e in batch), np.float64)))
    if not parts:
        return [], ()
    return list(streams), tuple(np.concatenate([p[k] for p in parts]) for k in range(7))  # names: index -> name


def _rows(names: list[str], columns: tuple[np.ndarray, ...]) -> Iterator[LiveRow]:
    if not columns:
        return
    stream, seq, student, level, t_capture, lengths, probs = columns
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for i in np.lexsort((student, seq, t_capture)).tolist():
        yield LiveRow(names[stream[i]], int(seq[i]), int(student[i]), int(level[i]),
                      probs[starts[i]:starts[i + 1]].tolist(), float(t_capture[i]))
