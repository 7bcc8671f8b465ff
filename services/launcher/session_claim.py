"""A session id claimed atomically on a shared Redis, so two runs can never write one session.

The start-up check (services/launcher/checks.py) only sees whether a session exists; two runs started
together with the same --session-id both passed it and one report showed the other's video.
Here the run claims `<prefix>:session:<id>:claim` with `SET NX PX` and its identity
(host:pid:start time); the key expires unless its holder keeps it (a refresh every third of the
TTL), so a run killed outright frees its id within CLAIM_TTL_SECONDS, and a holder whose process
is gone on this host may be taken over at once (the next run recovering that class's report).
Release and refresh are compare-and-act scripts: a run never deletes someone else's claim.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

log = logging.getLogger(__name__)

CLAIM_TTL_SECONDS = 30.0

# 1: kept; 2: the key was gone (Redis came back empty, or failed over to a replica without it) and is
# ours again; 0: another run holds it.
_REFRESH = ("local held = redis.call('GET', KEYS[1]) "
            "if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
            "if not held then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end return 0")
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_TAKE_OVER = ("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) "
              "return 1 end return 0")


def claim_key(prefix: str, session: str) -> str:
    return f"{prefix}:session:{session}:claim"


def this_run() -> str:
    """This process's identity in a claim."""
    return f"{socket.gethostname()}:{os.getpid()}:{time.time():.3f}"


def holder_gone(identity: str) -> bool:
    """Whether the claim's holder was a process on this host that no longer runs."""
    host, _, rest = identity.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another box's run: only its expiry frees the id
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def identity_text(raw: object) -> str:
    """A claim's value as Redis gives it (bytes), as text."""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def describe(identity: str) -> str:
    host, _, rest = identity.partition(":")
    pid, _, since = rest.partition(":")
    try:
        when = time.strftime("%H:%M:%S", time.localtime(float(since)))
    except ValueError:
        when = "?"
    return f"pid {pid} on {host}, since {when}"


class SessionClaim:
    def __init__(self, client: redis.Redis, prefix: str, session: str, ttl: float = CLAIM_TTL_SECONDS,
                 identity: str | None = None) -> None:
        self.r = client
        self.key = claim_key(prefix, session)
        self.session = session
        self.ttl_ms = int(ttl * 1000)
        self.identity = identity or this_run()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self) -> str | None:
        """Claim the session: None when it is ours, else the holder's identity.

        A holder whose process is gone on this host is taken over (its class is being recovered).
        """
        if self.r.set(self.key, self.identity, nx=True, px=self.ttl_ms):
            return None
        holder = self.r.get(self.key)
        if holder is None:  # expired between the two calls: try once more
            return None if self.r.set(self.key, self.identity, nx=True, px=self.ttl_ms) else "?"
        holder_text = identity_text(holder)
        if holder_gone(holder_text) and self.r.eval(_TAKE_OVER, 1, self.key, holder, self.identity, self.ttl_ms):
            log.info("session %s: took over the claim of a run that is gone (%s)", self.session,
                     describe(holder_text))
            return None
        return holder_text

    def keep(self) -> None:
        """Refresh the claim in the background until `release` (a run may last hours)."""
        self._keeper = threading.Thread(target=self._keep, name="session-claim", daemon=True)
        self._keeper.start()

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                kept = self.r.eval(_REFRESH, 1, self.key, self.identity, self.ttl_ms)
            except redis.RedisError as exc:  # Redis away for a moment: the next refresh tries again
                log.warning("session %s: claim not refreshed (%s)", self.session, exc)
                continue
            if kept == 2:  # Redis lost its data mid-class (the aggregator refills the totals from its journal)
                log.warning("session %s: Redis had lost the claim on its id: claimed again", self.session)
            elif not kept:
                log.error("session %s: another run holds its id now (%s): two runs may write this session",
                          self.session, self._holder())
                return

    def _holder(self) -> str:
        """Who holds the claim, in words ("?" when Redis cannot say)."""
        try:
            holder = self.r.get(self.key)
        except redis.RedisError:
            return "?"
        return describe(identity_text(holder)) if holder else "?"

    def release(self) -> bool:
        """Give the id back if it is still ours; whether it was."""
        self._stop.set()
        if self._keeper:
            self._keeper.join(2)
        try:
            return bool(self.r.eval(_RELEASE, 1, self.key, self.identity))
        except redis.RedisError as exc:
            log.warning("session %s: claim not released (%s); it expires by itself", self.session, exc)
            return False
