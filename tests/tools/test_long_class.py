"""tools/long_class.py writes a class as the aggregator would: its journal and Redis give the same report."""

from __future__ import annotations

import uuid

from services.reporter.report import build_report
from shared.data.journal import find_journal, read_journal, session_from_journal
from shared.data.totals import Store
from tests.support.env import REDIS_URL
from tools.long_class import main


def test_a_small_long_class_is_in_the_journal_and_in_redis(tmp_path, capsys):
    prefix = f"longtest-{uuid.uuid4().hex[:8]}"
    assert main(["--journal-dir", str(tmp_path), "--session", "lc", "--frames", "6", "--faces", "3",
                 "--redis-url", REDIS_URL, "--redis-prefix", prefix]) == 0
    assert "6 frames of 3 faces" in capsys.readouterr().out
    store = Store.from_url(REDIS_URL, prefix=prefix)
    try:
        journal = read_journal(find_journal(str(tmp_path), "lc", None))
        assert (journal.frame_count, journal.prediction_count, journal.ended(["s1"])) == (6, 18, True)
        from_redis = build_report(store.load_session("lc"), generated_at=1.0)
        assert from_redis.totals.predictions == 18 and from_redis.timeline[0].signals
        assert build_report(session_from_journal(journal), generated_at=1.0) == from_redis
    finally:
        store.r.delete(*store.r.keys(f"{prefix}:*"))  # the session and the class's index of it
