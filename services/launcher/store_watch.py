"""What the launcher watches besides its services: the private Redis and the disk, and what it says about
the store the report came from (the aggregator's journal: shared/data/journal.py)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import redis

from services.launcher.private_redis import PrivateRedis
from services.launcher.summary import ReportFolders
from shared.data.journal import disk_full_line, free_bytes
from shared.data.report_doc import load_report

log = logging.getLogger("launcher")
DISK_FULL_BYTES = 1 << 20  # less free space than this is a full disk (a journal line or a report needs more)
WATCH_INTERVAL = 0.5
# Redis unreachable this long after the source ended: the launcher stops waiting for the pipeline and has the
# report written from the journal (the aggregator hands the class to the reporter sooner: JOURNAL_HANDOFF_SECONDS;
# this is for when it cannot), so the class ends within STOP_TIMEOUT more.
STORE_GONE_SECONDS = 4.5


class StoreWatch:
    """Called from the launcher's loop: a private redis-server that died is started again (PrivateRedis.watch),
    and a full disk under the run or report folder is said once, in one line."""

    def __init__(self, private: PrivateRedis | None, run_dir: Path, reports: ReportFolders, redis_url: str) -> None:
        self.private = private
        self.folders = [run_dir, reports.asked]
        self.fallback = reports.fallback
        self.redis_url = redis_url
        self.said: set[Path] = set()
        self.next = 0.0
        self.redis_up = True
        self.client: redis.Redis | None = None
        self.gone_since: float | None = None
        self.next_ping = 0.0

    def store_gone(self) -> float:
        """Seconds Redis has not answered (0 while it does); pinged at most every WATCH_INTERVAL."""
        now = time.monotonic()
        if now >= self.next_ping:
            self.next_ping = now + WATCH_INTERVAL
            if self.client is None:
                self.client = redis.Redis.from_url(self.redis_url, socket_timeout=0.3, socket_connect_timeout=0.3)
            try:
                self.client.ping()
                self.gone_since = None
            except redis.RedisError:
                self.gone_since = self.gone_since or now
        return now - self.gone_since if self.gone_since else 0.0

    def check(self) -> None:
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + WATCH_INTERVAL
        if self.private and self.redis_up:
            self.redis_up = self.private.watch()
        for folder in self.folders:
            device_said = any(_same_device(folder, other) for other in self.said)
            if folder in self.said or device_said or free_bytes(folder) >= DISK_FULL_BYTES:
                continue
            self.said.add(folder)
            log.error("%s", disk_full_line(folder.resolve(), "the class's journal and report go to "
                                                             f"{self.fallback}"))


def _same_device(a: Path, b: Path) -> bool:
    try:
        return _existing(a).stat().st_dev == _existing(b).stat().st_dev
    except OSError:
        return False


def _existing(path: Path) -> Path:
    return next((p for p in (path, *path.parents) if p.exists()), Path("/"))


def say_where_figures_came_from(report_json: Path) -> None:
    """One line when the report's figures are not simply Redis's (from the journal, or refilled)."""
    try:
        store = load_report(report_json).store
    except (OSError, ValueError):  # ReportError and msgspec's DecodeError are ValueErrors
        return
    if store:
        missing = "; ".join(store.missing) or "nothing"
        print(f"figures: {store.note}; missing: {missing}", flush=True)
