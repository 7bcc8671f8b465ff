"""Fixtures every test folder may use; plain helpers live in tests/support (importable, not collected).

    redis_url   the test Redis (TEST_REDIS_URL, so parallel suites use their own database)
    store       a totals Store (shared/data/totals.py) under a key prefix of its own, deleted afterwards
    wait_until  wait for a condition (tests/support/waiting.py), never a fixed sleep
    metric      a metric of this process's registry (tests/support/metrics.py; off a running
                service's /metrics: tests.support.metrics.scrape)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from shared.data.marks import MarkStore
from shared.data.totals import Store
from tests.support import metrics, waiting
from tests.support.env import REDIS_URL


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    st = Store.from_url(redis_url, prefix=f"test-{uuid.uuid4().hex[:12]}")
    yield st
    keys = list(st.r.scan_iter(match=f"{st.prefix}:*", count=500))
    if keys:
        st.r.delete(*keys)


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    return waiting.wait_until


@pytest.fixture
def metric() -> Callable[..., float]:
    return metrics.local_metric


@pytest.fixture
def marks() -> Iterator[MarkStore]:
    """The teacher's marks in the real Redis, under a prefix of this test's own, removed after."""
    prefix = f"test-marks-{uuid.uuid4().hex[:8]}"
    store = MarkStore.from_url(REDIS_URL, prefix=prefix)
    yield store
    keys = list(store.r.scan_iter(match=f"{prefix}:*"))
    if keys:
        store.r.delete(*keys)
