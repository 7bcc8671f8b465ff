"""The report reaches the local broker once, eventually (issue 22).

When a report is on disk the reporter puts it, and the class's final totals, in a durable
outbox (shared/data/durable_queue.py, in the report folder: shared/data/outbox.py) and sends what is due
to the local broker; a row leaves only on the broker's PUBACK. A broker that is down costs a
retry later, with backoff, never the message. Who retries after the class ended:
- the reporter itself while it runs (every tick; in compose it always runs);
- the next reporter started on the same report folder (the next `engagement run -m`), which
  sends every earlier class's rows first;
- `engagement outbox flush`, once, on demand (cron or a systemd timer on a box that runs no
  class for days).
A message sent twice (a PUBACK lost on the way) has the same id: the bridge and the cloud drop
the repeat. Ids once acknowledged are remembered, so a report written again (recovery) is not
sent again.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from services.reporter.messaging import Publisher
from shared.bus.backoff import Backoff
from shared.data.durable_queue import DurableQueue
from shared.data.outbox import outbox_path
from shared.ops.command_parser import CommandParser
from shared.ops.config import report_fallback_dir

log = logging.getLogger("reporter.outbox")
WAITING = Gauge("engagement_outbox_messages", "Reports and final totals waiting in the outbox for the local broker")

RETRY_START, RETRY_CAP = 1.0, 60.0
SEND_TIMEOUT = 5.0  # per message, for PUBACK once connected


class Outbox:
    def __init__(self, path: Path, publisher: Publisher, stop: threading.Event | None = None) -> None:
        self.path = path
        self.stop = stop or threading.Event()  # a stop asked for ends a wait for the broker at once
        self.queue = DurableQueue(path)
        self.publisher = publisher
        self.backoff = Backoff(RETRY_START, RETRY_CAP)

    def put(self, kind: str, message_id: str, session: str, body: dict[str, Any]) -> None:
        """Commit one message; an id already queued or already delivered is not queued again."""
        if not self.queue.enqueue(message_id, kind, self.publisher.topic(kind),
                                  [self.publisher.envelope(kind, message_id, session, body)]):
            log.info("%s %s already queued or delivered: not queued again", kind, message_id)

    def flush(self, connect_timeout: float = 0.0) -> int:
        """Send what is due, oldest first, while the broker takes it; the rows left waiting.

        `connect_timeout` 0 (the reporter's tick): nothing is tried without a connection, a broker
        that is down must not stall the overlay. Else the first message waits that long for one.
        """
        if not self._connected(connect_timeout):
            if connect_timeout > 0 and self.queue.depth():
                log.warning("outbox: no connection to the local broker: %d message(s) stay queued",
                            self.queue.depth())
            return self._waiting()
        for row in self.queue.due(50, set()):
            if not self.publisher.send(row.kind, row.msg_id, row.payload, SEND_TIMEOUT):  # counted, logged there
                delay = self.backoff.next_delay()
                for waiting in self.queue.due(1000, set()):  # the broker is away: all of them later
                    self.queue.retry_later(waiting.seq, delay)
                log.warning("outbox: %d message(s) queued for the local broker; next try in %.0f s",
                            self.queue.depth(), delay)
                break
            self.queue.done(row.seq)
            self.backoff.reset()
            log.info("%s %s delivered to the local broker", row.kind, row.msg_id)
        return self._waiting()

    def _connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.publisher.connected.is_set():
            if self.stop.is_set() or time.monotonic() >= deadline:
                return False
            self.publisher.connected.wait(0.1)
        return True

    def _waiting(self) -> int:
        depth = self.queue.depth()
        WAITING.set(depth)
        return depth

    def close(self) -> None:
        self.queue.close()


def open_outbox(report_dir: str, setting: str, fallback: str, publisher: Publisher,
                stop: threading.Event | None = None) -> Outbox:
    """The outbox in the report folder (or OUTBOX_PATH); in the fallback folder when that one cannot be used."""
    path = outbox_path(report_dir, setting)
    try:
        return Outbox(path, publisher, stop)
    except Exception as exc:  # noqa: BLE001 - sqlite3 or OS error: the report folder went away, or is full
        other = outbox_path(report_fallback_dir(fallback))
        log.error("outbox %s cannot be opened (%s): using %s", path, exc, other)
        return Outbox(other, publisher, stop)


def main(argv: list[str]) -> int:
    """`engagement outbox flush`: send what waits in the outbox now; exit 0 when nothing is left."""
    from shared.ops.config import SettingError, load_settings, log_level_of_environment
    from shared.ops.logs import setup_logging
    from shared.ops.settings import ReporterSettings

    parser = CommandParser(
        prog="engagement outbox", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="It also takes the reporter's settings, as flags or environment: --report-dir or --outbox-path (which "
               "outbox), --mqtt-host, --mqtt-port, --device-id (which broker, under which device's topics). When a "
               "class's report is queued, `engagement run -m` prints the exact command.")
    parser.add_argument("action", choices=["flush", "status"])
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker (default 10)")
    args, rest = parser.parse_known_args(argv)
    setup_logging("outbox", log_level_of_environment("WARNING"))
    try:
        s = load_settings("reporter", rest)
        assert isinstance(s, ReporterSettings)  # (BY_SERVICE's class for the reporter)
    except SettingError as exc:
        print(f"engagement outbox: {exc}", file=sys.stderr)
        return 2
    path = outbox_path(s.report_dir, s.outbox_path)
    if not path.is_file():
        print(f"outbox {path}: empty (nothing was ever queued)")
        return 0
    if args.action == "status":
        queue = DurableQueue(path)
        depth = queue.depth()
        queue.close()
        print(f"outbox {path}: {depth} message(s) waiting for the broker at {s.mqtt_host}:{s.mqtt_port}")
        return 0
    publisher = Publisher(s.mqtt_host, int(s.mqtt_port), s.device_id, SEND_TIMEOUT, role="outbox-flush")
    outbox = Outbox(path, publisher)
    try:
        before = outbox.queue.depth()
        outbox.queue.retry_all_now()  # on demand: everything now, not at its backoff
        started = time.monotonic()
        left = outbox.flush(connect_timeout=args.timeout)
        print(f"outbox {path}: {before - left} delivered to {s.mqtt_host}:{s.mqtt_port}, {left} still queued "
              f"({time.monotonic() - started:.1f} s)")
        return 0 if left == 0 else 1
    finally:
        outbox.close()
        publisher.close()
