"""shared/data/redis_retention.py against a real redis-server of the test's own, started as compose
starts it (maxmemory, volatile-ttl): memory runs out, the reported session is evicted, the
running session loses nothing and further writes fail loudly instead of evicting it."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
import uuid

import pytest
import redis

from shared.data.redis_retention import EVICTION_POLICY, eviction_problem, expire_keys
from shared.data.totals import FrameRecord, Store
from shared.ops.ports import free_ports

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs Debian's redis-server")


@pytest.fixture
def small_redis(tmp_path):
    """redis-server with 3 MB of maxmemory and compose's eviction policy."""
    port = free_ports(1)[0]
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), "--maxmemory", "3mb",
                             "--maxmemory-policy", EVICTION_POLICY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield client
    finally:
        proc.terminate()
        proc.wait(10)


def frame(session: str, seq: int, students: int = 8) -> FrameRecord:
    preds = [{"student": s, "level": (seq + s) % 4, "probs": [0.1, 0.2, 0.3, 0.4]} for s in range(students)]
    return FrameRecord(session=session, class_id="c1", stream="cam0", seq=seq, t_capture=1e9 + seq, t_media=None,
                       faces=students, predictions=preds)


def session_keys(client: redis.Redis, store: Store, session: str) -> list[str]:
    return list(client.scan_iter(match=store.session_pattern(session)))


def test_memory_pressure_evicts_the_reported_session_never_the_running_one(small_redis):
    store = Store(small_redis, prefix="t")
    for seq in range(150):
        store.record_frame(frame("reported", seq))
    store.end_session("reported", 2e9, "end_of_file", "c1", "cam0")
    reported = session_keys(small_redis, store, "reported")
    assert expire_keys(small_redis, store.session_pattern("reported"), 3600) == len(reported) >= 5

    written, refused = 0, None
    for seq in range(20000):  # far more than 3 MB of timeline
        try:
            store.record_frame(frame("running", seq))
            written += 1
        except redis.exceptions.OutOfMemoryError as exc:
            refused = exc
            break
    # Refused at the script's first write: the frame is not half-counted (totals below add up).
    assert refused is not None, "Redis should refuse writes once only running keys are left"
    assert small_redis.info("stats")["evicted_keys"] >= 1
    assert session_keys(small_redis, store, "reported") != reported  # evicted (all or part of it)
    # Every frame of the running session that Redis accepted is still there, none has a TTL.
    assert store.session_totals("running")["frames"] == written and written > 150
    assert store.session_totals("running")["predictions"] == 8 * written
    assert len(store.timeline("running")) == 8 * written
    assert all(small_redis.ttl(k) == -1 for k in session_keys(small_redis, store, "running"))


def test_expire_keys_touches_only_the_pattern_and_zero_means_keep(small_redis):
    store = Store(small_redis, prefix=f"t{uuid.uuid4().hex[:6]}")
    for session in ("a", "b"):
        store.record_frame(frame(session, 1))
    assert expire_keys(small_redis, store.session_pattern("a"), 0) == 0
    assert all(small_redis.ttl(k) == -1 for k in session_keys(small_redis, store, "a"))
    assert expire_keys(small_redis, store.session_pattern("a"), 120) > 0
    assert all(0 < small_redis.ttl(k) <= 120 for k in session_keys(small_redis, store, "a"))
    assert all(small_redis.ttl(k) == -1 for k in session_keys(small_redis, store, "b"))
    assert small_redis.ttl(f"{store.prefix}:class:c1:totals") == -1  # class totals are kept


def test_expire_keys_with_redis_down_logs_and_returns_zero(caplog):
    gone = redis.Redis(port=free_ports(1)[0], socket_connect_timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="redis_retention"):
        assert expire_keys(gone, "t:session:x:*", 60) == 0
    assert "could not set the TTL" in caplog.text


def test_eviction_problem_names_a_policy_that_could_drop_a_running_session(small_redis):
    assert eviction_problem(small_redis) is None
    small_redis.config_set("maxmemory-policy", "allkeys-lru")
    problem = eviction_problem(small_redis)
    assert problem and "allkeys-lru" in problem and EVICTION_POLICY in problem
    small_redis.config_set("maxmemory-policy", "noeviction")
    assert eviction_problem(small_redis) is None
