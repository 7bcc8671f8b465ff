"""Tools for fault tests against the REAL running pipeline: processes, sockets, Redis.

- `Tap`: the predictions link routed through the test (PULL from inference, PUSH on to the
  aggregator), so totals are checked against what inference actually published. It keeps
  the FIRST message per (session, stream, seq), as the aggregator's idempotent write does,
  and the time of every arrival (to measure how soon the pipeline resumes after a fault).
- `LauncherRun`: `engagement run` in this process (its signal handlers need the main
  thread) with the tap wired in and a fault script on a background thread.
- `service_pid`, `rss`: find a service process, read its memory (its /metrics: tests/support/metrics.py).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.taps import LinkTap
from services.launcher import main as launcher
from shared.bus.messages import Message


class Tap(LinkTap):
    """The predictions link through the test, recording what inference really published."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str, int], dict] = {}  # (session, stream, seq) -> first header
        # (monotonic time, stage stamps) of every predictions message, resends included
        self.arrivals: list[tuple[float, dict[str, float]]] = []
        self.latencies: list[float] = []
        self.messages = 0
        self.duplicates = 0  # resends and replays of a (session, stream, seq) already seen
        self.eos = 0
        super().__init__("predictions", "inference", "aggregator")

    def on_message(self, msg: Message, arrived: float) -> None:
        if msg.kind == "eos":
            self.eos += 1
            return
        if msg.kind != "predictions":
            return
        self.messages += 1
        self.arrivals.append((time.monotonic(), dict(msg.header.stamps)))
        key = (msg.header.session, msg.header.stream, msg.header.seq)
        if key in self.first:
            self.duplicates += 1
            return
        self.first[key] = msg.header
        # End-to-end latency: capture until the prediction reached the tap.
        self.latencies.append(arrived - msg.header.t_capture)

    def first_handled_after(self, stage: str, wall: float, timeout: float) -> float | None:
        """Monotonic arrival of the first prediction that `stage` handled after wall time `wall`.

        A restarted stage stamps what it handles, so this is when its work reached the tap
        (None: nothing in time). Messages queued downstream of it do not count.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                later = [t for t, stamps in self.arrivals if stamps.get(stage, 0.0) > wall]
            if later:
                return later[0]
            time.sleep(0.02)
        return None

    def count(self) -> int:
        with self.lock:
            return len(self.first)

    def published(self) -> dict[str, Any]:
        """What inference published, each (session, stream, seq) counted once (first wins)."""
        levels: Counter[int] = Counter()
        predictions = 0
        with self.lock:
            for header in self.first.values():
                for p in header.predictions:
                    levels[p["level"]] += 1
                    predictions += 1
            return {"frames": len(self.first), "predictions": predictions, "levels": dict(levels)}


class LauncherRun:
    """`engagement run` in this process with the tap wired in; `fault` runs on a thread."""

    def __init__(self, source: str, report_dir: Path, redis_url: str, env: dict[str, str] | None = None,
                 extra: list[str] | None = None) -> None:
        self.tap = Tap()
        self.report_dir = report_dir
        self.session = f"rel-{os.getpid()}-{time.monotonic_ns() % 10**9}"
        self.args = launcher.build_parser().parse_args(
            ["--source", source, "--report-dir", str(report_dir), "--redis-url", redis_url,
             "--session-id", self.session, *(extra or [])])
        self.env = env or {}
        self.envs: dict[str, dict[str, str]] = {}
        self.fault_error: BaseException | None = None
        self.code: int | None = None

    def _adjust(self, envs: dict[str, dict[str, str]]) -> None:
        self.tap.rewire(envs)
        for service_env in envs.values():
            service_env.update(self.env)
        self.envs = envs

    def metrics_port(self, service: str) -> int:
        return int(self.envs[service]["METRICS_PORT"])

    def run(self, fault: Callable[[LauncherRun], None] | None = None) -> int:
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def guarded() -> None:
            try:
                fault(self)
            except BaseException as exc:  # surfaced after the run
                self.fault_error = exc

        thread = threading.Thread(target=guarded, name="fault", daemon=True) if fault else None
        if thread:
            thread.start()
        try:
            self.code = launcher.run(self.args, adjust_env=self._adjust)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self.tap.close()
        if thread:
            thread.join(30)
        if self.fault_error is not None:
            raise self.fault_error
        return self.code

    def report(self) -> dict[str, Any]:
        return json.loads((self.report_dir / f"{self.session}.json").read_text())

    def wait_for_predictions(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.tap.count() < n:
            assert time.monotonic() < deadline, f"only {self.tap.count()} predictions after {timeout} s"
            time.sleep(0.05)


# --- processes ----------------------------------------------------------------------------

def service_pid(name: str, timeout: float = 60.0) -> int:
    """Pid of the running `python -m engagement.cli <name>` child of this process."""
    deadline = time.monotonic() + timeout
    while True:
        for child in psutil.Process().children(recursive=False):
            try:
                cmd = child.cmdline()
                if cmd[-2:] == ["engagement.cli", name]:
                    if child.status() != psutil.STATUS_ZOMBIE:
                        return child.pid
            except psutil.Error:
                continue
        assert time.monotonic() < deadline, f"no running {name} process"
        time.sleep(0.05)


def rss(pid: int) -> int:
    """Resident memory of a process in bytes (VmRSS of /proc/<pid>/status)."""
    return psutil.Process(pid).memory_info().rss


def wait_healthy(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"service on metrics port {port} not healthy"
        time.sleep(0.05)


def report_figures(title: str, **figures: Any) -> None:
    """One greppable line of figures per test (pytest -s shows them; CI logs keep them)."""
    print(f"\nRELIABILITY {title}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
