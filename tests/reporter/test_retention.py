"""The reporter gives a session's Redis keys a TTL only once the session's report is on disk
(shared/data/redis_retention.py): before that nothing of the session can be evicted."""

from __future__ import annotations

import json

from services.reporter.service import ReporterService
from shared.data.totals import Store
from tests.harness import settings_for
from tests.support.env import REDIS_URL
from tests.support.sessions import record_session


def reporter(store: Store, tmp_path, **values) -> ReporterService:
    service = ReporterService(settings_for("reporter", redis_url=REDIS_URL, redis_prefix=store.prefix,
                                           report_dir=str(tmp_path), headless=1, **values))
    service.setup()
    return service


def ttls(store: Store, session: str) -> dict[str, int]:
    return {k: store.r.ttl(k) for k in store.r.scan_iter(match=store.session_pattern(session))}


def test_keys_get_their_ttl_only_after_the_report_is_written(store, tmp_path):
    record_session(store, "s1")
    record_session(store, "s2")
    store.end_session("s1", 2e9, "end_of_file", "class-t", "cam0")
    assert ttls(store, "s1") and set(ttls(store, "s1").values()) == {-1}  # ended, not reported: kept

    txt, js = reporter(store, tmp_path).write_report("s1")
    assert json.loads(js.read_text())["totals"]["frames"] == 6 and txt.exists()
    after = ttls(store, "s1")
    assert len(after) >= 5 and all(0 < ttl <= 24 * 3600 for ttl in after.values()), after
    # The running session and the class totals keep no TTL.
    assert set(ttls(store, "s2").values()) == {-1}
    assert store.r.ttl(f"{store.prefix}:class:class-t:totals") == -1


def test_a_ttl_of_zero_keeps_reported_sessions(store, tmp_path):
    record_session(store, "s1")
    store.end_session("s1", 2e9, "end_of_file", "class-t", "cam0")
    reporter(store, tmp_path, reported_session_ttl=0).write_report("s1")
    assert set(ttls(store, "s1").values()) == {-1}
