"""A session's frames written to the real Redis as the aggregator writes them (for the reporter's tests)."""

from __future__ import annotations

from shared.data.totals import FrameRecord, Store


def record_session(store: Store, session: str, frames: int = 6) -> None:
    """`frames` frames of two students on stream cam0 of class class-t."""
    for seq in range(frames):
        preds = [{"student": s, "level": (seq + s) % 4, "probs": [0.7, 0.1, 0.1, 0.1]} for s in range(2)]
        store.record_frame(FrameRecord(session, "class-t", "cam0", seq, 1e9 + seq, seq * 0.5, 2, preds))
