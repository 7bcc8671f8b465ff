"""Issue 22, item 3: the report reaches the local broker once, eventually.

A real `engagement run -m` against a Mosquitto of the test's own (never the machine's 1883),
up at the start and stopped mid-class, so it is down when the class ends: the run exits 0, its
summary says the report is queued for the broker, and the report and the final totals wait in
the outbox. The broker started again,
`engagement outbox flush` delivers them, once: a second flush sends nothing more. The next
reporter on the folder sending earlier classes' rows is tested in tests/reporter/test_outbox.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from shared.data.outbox import outbox_path, queued_for
from tests.mqtt_bridge.helpers import PlainBroker
from tests.support.mqtt import Collector
from tests.support.runs import processes_from, wait_gone
from tests.support.waiting import wait_until

ENV = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPORT_DIR", "FPS", "RECORD", "MODEL")}


def _engagement(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engagement.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engagement.cli", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_report_the_broker_missed_is_queued_and_delivered_once(classroom: Path, tmp_path_factory) -> None:
    broker = PlainBroker(tmp_path_factory.mktemp("broker"))
    broker.start()  # up for the start-up check and the class's start, down when the class ends
    device = f"outbox-{uuid.uuid4().hex[:8]}"
    mqtt_flags = ["--mqtt-port", str(broker.port), "--device-id", device]
    started = time.monotonic()
    proc = _start(classroom, "run", "--source", "class.avi", "--realtime", "-m", *mqtt_flags)
    try:
        assert wait_until(lambda: proc.poll() is not None or any(
            "capture" in " ".join(p.cmdline()) for p in processes_from(classroom) if p.pid != proc.pid), 90)
    finally:
        broker.stop()
    out, err = proc.communicate(timeout=180)
    run = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    session = json.loads(Path(classroom / re.findall(r"^report: (\S+\.json)$", run.stdout, re.M)[-1])
                         .read_text())["session"]
    assert re.search(r"^report queued for the broker: 127\.0\.0\.1:\d+ has not taken it", run.stdout, re.M), run.stdout
    # The summary gives the exact command: this outbox, this broker, this device's topics.
    (printed,) = re.findall(r"`(engagement outbox flush [^`]+)`", run.stdout)
    assert f"--device-id {device}" in printed and f"--mqtt-port {broker.port}" in printed, printed
    outbox = outbox_path(classroom / "reports")
    assert queued_for(outbox, session) == 2  # the report and the final totals
    print(f"\nrun with the broker down: {took:.1f} s, exit 0, report queued")

    broker.start()  # again, on the same port
    collector = Collector(broker.port, device)
    try:
        flush = _engagement(classroom, *printed.split()[1:], timeout=60)  # as the user would copy it
        assert flush.returncode == 0, flush.stdout + flush.stderr
        assert "2 delivered" in flush.stdout and "0 still queued" in flush.stdout, flush.stdout
        expected = sorted([f"{session}:report", f"{session}:totals:final"])
        assert wait_until(lambda: collector.ids() == expected, 10), collector.ids()
        assert queued_for(outbox, session) == 0
        again = _engagement(classroom, "outbox", "flush", *mqtt_flags, timeout=60)
        assert again.returncode == 0 and "0 delivered" in again.stdout, again.stdout + again.stderr
        time.sleep(1.0)
        assert collector.ids() == expected  # once: nothing sent twice
        with collector.lock:
            report = next(json.loads(p) for t, p in collector.messages if t.endswith("/report"))
        assert report["body"]["totals"]["frames"] > 0 and report["session"] == session
    finally:
        collector.close()
        broker.stop()
    assert wait_gone(classroom) == []


def test_a_report_written_after_a_crash_goes_through_the_outbox_too(tmp_path: Path) -> None:
    """The report a launcher writes from Redis (a stop that could not drain, a class whose launcher
    died) keeps the run's MQTT settings: it reaches the broker like any other, once."""
    from services.launcher.recovery import report_from_redis
    from shared.data.totals import FrameRecord, Store
    from tests.support.env import REDIS_URL, delete_prefix

    prefix, session = f"t-{uuid.uuid4().hex[:8]}", f"crashed-{uuid.uuid4().hex[:6]}"
    store = Store.from_url(REDIS_URL, prefix=prefix)
    now = time.time()
    for seq in range(3):
        store.record_frame(FrameRecord(session, "c", "cam0", seq, now + seq, float(seq), 1,
                                       [{"student": 1, "level": seq % 4, "probs": [0.25] * 4}], {}))
    broker = PlainBroker(tmp_path)
    broker.start()
    device = f"outbox-{uuid.uuid4().hex[:8]}"
    collector = Collector(broker.port, device)
    try:
        report_from_redis(session, REDIS_URL, {"REPORT_DIR": str(tmp_path / "reports"), "REDIS_PREFIX": prefix,
                                               "MESSAGING": "1", "MQTT_PORT": str(broker.port),
                                               "DEVICE_ID": device}, 60.0)
        expected = sorted([f"{session}:report", f"{session}:totals:final"])
        assert wait_until(lambda: collector.ids() == expected, 10), collector.ids()
        assert queued_for(outbox_path(tmp_path / "reports"), session) == 0
    finally:
        collector.close()
        broker.stop()
        delete_prefix(prefix)  # the session, and the class's index of it
