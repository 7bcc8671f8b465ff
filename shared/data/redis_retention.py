"""Which Redis keys may be evicted: only those of a session whose report is safely on disk.

Redis runs with `maxmemory` and a `volatile-*` policy (compose/docker-compose.yml), which evicts
only keys that carry a TTL. No key gets a TTL while its session runs; the reporter gives a
session's keys one (`expire_keys`) after the session's report has been written and fsynced. So
under memory pressure Redis drops finished, reported sessions first (volatile-ttl: the oldest
first) and, with none left, refuses writes (the aggregator keeps its backlog and inference
resends) instead of evicting the totals of a class that is still running.
"""

from __future__ import annotations

import logging

import redis

# compose sets these on redis-server; `eviction_problem` accepts any volatile-* or noeviction.
EVICTION_POLICY = "volatile-ttl"
SAFE_POLICIES = frozenset({"volatile-ttl", "volatile-lru", "volatile-lfu", "volatile-random", "noeviction"})

log = logging.getLogger("redis_retention")


def expire_keys(client: redis.Redis, pattern: str, ttl_seconds: int) -> int:
    """Give every key matching `pattern` a TTL; returns how many keys got one.

    Best effort: a Redis error is logged and 0 returned (the keys then just stay without a TTL,
    never evictable; nothing is lost). ttl_seconds <= 0 leaves the keys alone.
    """
    if ttl_seconds <= 0:
        return 0
    try:
        keys = list(client.scan_iter(match=pattern, count=500))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.expire(key, int(ttl_seconds))
        return sum(bool(done) for done in pipe.execute()) if keys else 0
    except redis.RedisError as exc:
        log.warning("could not set the TTL of %s (%s): those keys stay until deleted", pattern, exc)
        return 0


def eviction_problem(client: redis.Redis) -> str | None:
    """One line when the server's eviction policy could drop a running session's keys."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
    except redis.RedisError:
        return None  # CONFIG may be disabled (managed Redis): nothing to say
    if policy and policy not in SAFE_POLICIES:
        return (f"Redis maxmemory-policy is {policy}: it may evict a running session's totals; "
                f"use {EVICTION_POLICY} (only reported sessions carry a TTL)")
    return None
