"""The session claim (services/launcher/session_claim.py) on the real Redis: atomic, kept, released only by
its holder, expired when nobody keeps it, taken over from a run whose process is gone."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid

import redis

from services.launcher.session_claim import SessionClaim, claim_key
from tests.support.env import REDIS_URL
from tests.support.run_settings import run_settings_with
from tests.support.waiting import wait_for


def _client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def _session() -> str:
    return f"claim-{uuid.uuid4().hex[:10]}"


def test_one_claimant_wins_and_only_it_releases() -> None:
    r, session = _client(), _session()
    first = SessionClaim(r, "test", session, identity=f"{socket.gethostname()}:1:1.0")
    second = SessionClaim(_client(), "test", session)
    try:
        assert first.acquire() is None
        holder = second.acquire()  # pid 1 is alive: never taken over
        assert holder == first.identity
        assert second.release() is False and r.get(claim_key("test", session)) == first.identity.encode()
        assert first.release() is True
        assert r.get(claim_key("test", session)) is None
        assert second.acquire() is None  # free again
    finally:
        second.release()


def test_a_claim_nobody_keeps_expires_and_a_kept_one_does_not() -> None:
    r = _client()
    lapsed, kept = (SessionClaim(r, "test", _session(), ttl=0.6) for _ in range(2))
    assert lapsed.acquire() is None and kept.acquire() is None
    kept.keep()
    try:
        time.sleep(1.5)
        assert r.get(lapsed.key) is None  # a run killed outright frees its id by itself
        assert r.get(kept.key) == kept.identity.encode()
    finally:
        assert kept.release() is True


def test_the_claim_of_a_run_whose_process_is_gone_is_taken_over() -> None:
    r, session = _client(), _session()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = f"{socket.gethostname()}:{int(dead.stdout)}:1.0"
    other_box = f"another-box-{uuid.uuid4().hex[:6]}:{int(dead.stdout)}:1.0"
    r.set(claim_key("test", session), gone, px=30_000)
    recovering = SessionClaim(r, "test", session)
    assert recovering.acquire() is None  # the recovering run takes its own class's claim
    assert r.get(recovering.key) == recovering.identity.encode()
    assert recovering.release()
    r.set(claim_key("test", session), other_box, px=30_000)  # another box: only its expiry frees it
    try:
        assert SessionClaim(r, "test", session).acquire() == other_box
    finally:
        r.delete(claim_key("test", session))


def test_the_start_up_check_names_a_live_claimant_and_ignores_a_gone_one() -> None:
    from services.launcher import checks

    r, session = _client(), _session()
    redis_check = dict(checks.CHECKS)["redis"]
    ctx = checks.Context(run_settings_with(redis_url=REDIS_URL, redis_prefix="test", session_id=session),
                         extra={"session_given": True})
    holder = SessionClaim(r, "test", session)  # this test process: alive
    try:
        assert redis_check(ctx).ok
        assert holder.acquire() is None
        result = redis_check(ctx)
        assert not result.ok and "in use by another run" in result.detail and "pid" in result.detail
        r.set(holder.key, f"{socket.gethostname()}:{_dead_pid()}:1.0", px=30_000)  # its run died: recoverable
        assert redis_check(ctx).ok
    finally:
        r.delete(holder.key)


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_a_claim_that_redis_lost_mid_class_is_made_again_and_one_taken_by_another_run_is_not(caplog) -> None:
    # Redis restarted without its data (or failed over to a replica without the key) while a class ran:
    # the keeper claims the id again, so a second run with the same --session-id is still refused.
    r = _client()
    kept = SessionClaim(r, "test", _session(), ttl=0.6)
    assert kept.acquire() is None
    kept.keep()
    try:
        r.delete(kept.key)  # what an empty Redis looks like to the keeper
        wait_for(lambda: r.get(kept.key) == kept.identity.encode(), "the claim made again", timeout=5)
        assert SessionClaim(_client(), "test", kept.session).acquire() == kept.identity
        assert "Redis had lost the claim on its id: claimed again" in caplog.text
        # Another run holds it now (it took the id while the key was gone): the keeper says so, and lets it be.
        other = f"another-box-{uuid.uuid4().hex[:6]}:7:1.0"
        r.set(kept.key, other, px=30_000)
        wait_for(lambda: "another run holds its id now" in caplog.text, "the keeper's error", timeout=5)
        time.sleep(0.5)  # more than a refresh: the keeper has stopped and never overwrites the other's claim
        assert r.get(kept.key) == other.encode()
    finally:
        kept.release()
        r.delete(kept.key)
