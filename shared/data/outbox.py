"""Where the reporter's outbox lives, and what waits in it (read by the launcher's summary).

The outbox (services/reporter/outbox.py) is a durable queue (shared/data/durable_queue.py) in the
report folder, `<REPORT_DIR>/.outbox.sqlite3` unless OUTBOX_PATH says otherwise: the report and
the final totals of each class wait there until the local MQTT broker acknowledges them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

OUTBOX_FILE = ".outbox.sqlite3"


def outbox_path(report_dir: str | Path, setting: str = "") -> Path:
    return Path(setting) if setting else Path(report_dir) / OUTBOX_FILE


def flush_command(path: Path, mqtt_host: str, mqtt_port: int, device_id: str) -> str:
    """The command that sends what waits in the outbox at `path` to that broker under that device's topics,
    whichever folder the class's report went to (a bare `engagement outbox flush` reads the default report
    folder's, and publishes as the default device)."""
    return (f"engagement outbox flush --outbox-path {path} --mqtt-host {mqtt_host} --mqtt-port {mqtt_port} "
            f"--device-id {device_id}")


def queued_for(path: Path, session: str) -> int:
    """Messages of `session` the broker has not taken yet (0 when there is no outbox)."""
    if not path.is_file():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            prefix = f"{session}:"
            return int(db.execute("SELECT COUNT(*) FROM outbox WHERE substr(msg_id, 1, ?) = ?",
                                  (len(prefix), prefix)).fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0
