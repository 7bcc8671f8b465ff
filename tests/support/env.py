"""Where the tests find Redis: TEST_REDIS_URL (one database per parallel suite), else db 0."""

from __future__ import annotations

import os

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
