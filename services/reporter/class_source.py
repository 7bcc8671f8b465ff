"""Where a report's figures come from: Redis, or the aggregator's journal when Redis is gone or lost part
of the class (shared/data/journal.py). The report says which (its `store` section) and what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from shared.data.journal import JournalContents, find_journal, read_journal, session_from_journal
from shared.data.timeline_columns import RawTimeline
from shared.data.totals import Store, safe_url

# The marks the web kept on disk are reported (shared/data/marks_journal.py); what only Redis had is not.
REDIS_ONLY = "the tile names and any teacher's mark the web could not keep on disk (kept in Redis only)"


def load_class(store: Store, session: str, journal_dir: str, fallback: Path | None, expected: list[str],
               interrupted: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(what `Store.load_session` returns, the report's `store` section or None when Redis had it all).

    Redis unreachable: the journal, when it holds the class's end (or `interrupted`: a class a crash cut
    short, whatever it holds); else the RedisError goes up (retried). Redis reachable but holding fewer
    frames than the journal (it lost some after the aggregator's last write): the journal.
    """
    path = find_journal(journal_dir, session, fallback) if journal_dir else None
    journal = read_journal(path, keep_frames=False) if path else None  # counted: the frames are read if used
    try:
        data = store.load_session(session)
    except redis.RedisError as exc:
        if journal is None or not (journal.ended(expected) or interrupted):
            raise
        why = f"Redis at {safe_url(store.url)} unreachable ({exc})"
        return _from_journal(journal, why, interrupted)
    frames = data["totals"]["frames"]
    if journal is not None and journal.frame_count > frames:
        why = f"Redis held {frames} of the {journal.frame_count} frames the aggregator accepted"
        return _from_journal(journal, why, interrupted)
    meta = data["meta"]
    if not meta.get("refills"):
        return data, None
    return data, {"source": "redis", "resets": meta["refills"], "refilled_frames": meta["refilled_frames"],
                  "missing": [],
                  "note": f"Redis lost the class {meta['refills']} time(s) (it came back empty or from an old "
                          f"snapshot); the aggregator refilled {meta['refilled_frames']} frames from its journal"}


def _from_journal(journal: JournalContents, why: str, interrupted: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    data = session_from_journal(journal)
    missing = [REDIS_ONLY]
    if journal.unreadable:
        missing.append(f"{journal.unreadable} journal line(s) cut short (unreadable)")
    open_streams = [st["stream"] for st in data["streams"] if st["ended"] is None]
    if open_streams:
        missing.append("the end of stream(s) " + ", ".join(open_streams) + " (the class was cut short)")
    if data["meta"]["ended"] is None or (interrupted and open_streams):
        timeline = data["timeline"]
        last = data["meta"]["started"] if not len(timeline) else float(timeline.columns.t_capture[-1]) \
            if isinstance(timeline, RawTimeline) else timeline[-1].t_capture
        data["meta"]["ended"], data["meta"]["end_reason"] = last, "interrupted"
    return data, {"source": "journal", "journal": str(journal.path), "frames": journal.frame_count, "why": why,
                  "missing": missing,
                  "note": f"written from the aggregator's journal {journal.path} ({why})"}
