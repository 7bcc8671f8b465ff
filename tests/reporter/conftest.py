"""The reporter's tests: a Store on the real Redis under a prefix of the test's own, emptied after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from shared.data.totals import Store
from tests.support.env import REDIS_URL


@pytest.fixture
def store() -> Iterator[Store]:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield Store(client, prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
