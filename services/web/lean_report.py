"""A report as the web's pages read it: a long class's timeline without what no page computes from.

An hour of a 7x7 gallery is 352,800 timeline entries, a 220 MB file with the baseline's signals.
Read whole (`load_report`) it took 766 MB in the web to answer the session page's lesson, 1 GB to
answer its report: over the 512M the web has on an AGX Orin, so a teacher looking at a past class
had the web killed, and with it the live page of the class under way.

Past LEAN_AFTER entries a page's report keeps of each entry what the pages compute from (stream, seq,
student, level, capture and media times), without its probabilities, box, confidence, signals or
states; the file is mapped, not read, so its bytes are the page cache's, not the process's. Whoever
needs whole entries (the CSV) reads them one at a time (`timeline_entries`), and the JSON document is
the file itself.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from shared.data.report_doc import Report, ReportError, TimelineEntry
from shared.data.timeline_columns import LONG_TIMELINE, IndexedEntry

LEAN_AFTER = LONG_TIMELINE  # timeline entries: where the reporter reads a class's timeline raw too


class _RawTimelineReport(Report, kw_only=True, rename={"class_": "class"}):
    """The report with each timeline entry left as its JSON (a slice of the file, not parsed)."""
    timeline: list[msgspec.Raw]  # type: ignore[assignment]  # the same field, read unparsed


_LEAN = msgspec.json.Decoder(IndexedEntry)  # what pages compute from; the entry's other keys are skipped
_ENTRY = msgspec.json.Decoder(TimelineEntry)
_NO_PROBS: list[float] = []  # one list for every lean entry: nothing appends to a report's probs


@contextmanager
def _mapped(path: Path) -> Iterator[mmap.mmap]:
    """The file mapped read-only. Raw slices point into it: every one must be gone before it closes."""
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        yield m


def _decode_raw(buffer: mmap.mmap) -> _RawTimelineReport:
    try:
        return msgspec.json.decode(buffer, type=_RawTimelineReport)
    except msgspec.ValidationError as exc:
        raise ReportError(f"not a report: {exc}") from exc


def load_for_pages(path: str | Path) -> tuple[Report, bool]:
    """(the report, whether its timeline is lean). ReportError (a ValueError) when the file is no report;
    an empty file is a ValueError too (it cannot be mapped)."""
    with _mapped(Path(path)) as buffer:
        doc = _decode_raw(buffer)
        if len(doc.timeline) <= LEAN_AFTER:
            entries = [_ENTRY.decode(raw) for raw in doc.timeline]
            lean = False
        else:
            streams: dict[str, str] = {}  # one str a stream, not one an entry
            entries = [_lean_entry(_LEAN.decode(raw), streams) for raw in doc.timeline]
            lean = True
        doc.timeline = []  # the raw slices hold the mapping: let them go before it closes
    fields = {name: getattr(doc, name) for name in doc.__struct_fields__ if name != "timeline"}
    return Report(**fields, timeline=entries), lean


def _lean_entry(e: IndexedEntry, streams: dict[str, str]) -> TimelineEntry:
    return TimelineEntry(stream=streams.setdefault(e.stream, e.stream), seq=e.seq, student=e.student,
                         level=e.level, probs=_NO_PROBS, t_capture=e.t_capture, t_media=e.t_media)


def timeline_entries(path: str | Path) -> Iterator[TimelineEntry]:
    """The file's timeline entries, whole, decoded one at a time."""
    with _mapped(Path(path)) as buffer:
        doc = _decode_raw(buffer)
        raws, doc.timeline = doc.timeline, []
        try:
            for i in range(len(raws)):
                entry = _ENTRY.decode(raws[i])
                yield entry
        finally:
            raws.clear()
