"""Where the tests find Redis: TEST_REDIS_URL (one database per parallel suite), else db 0."""

from __future__ import annotations

import os

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def delete_prefix(prefix: str, url: str = REDIS_URL) -> None:
    """Every key under `prefix:` gone: what a test wrote under a prefix of its own (the class's index of its
    sessions and the marks too, which the product keeps with no expiry)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
