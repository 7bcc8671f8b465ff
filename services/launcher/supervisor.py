"""Runs each service as its own OS process, restarts the ones that die, stops them in order.

What `restart: on-failure` does in compose, done here for local runs: a service that exits
with an error or is killed comes back (at most `max_restarts` times, with a short backoff),
while one that exits cleanly (capture after end of stream) stays down. One that used up its
restarts stays down too, marked `crashed` (the launcher ends a crashed capture's stream for it).
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from services.launcher.stopping import StartStopped, StopRequests
from shared.ops.config import RESTART_ENV, STREAM_STARTED_ENV
from shared.ops.service import EXIT_GAVE_UP

log = logging.getLogger("launcher")
FINAL_EXIT_CODES = (0, EXIT_GAVE_UP)


def how_it_ended(code: int) -> str:
    """A child's end in words: "exited with 1", "was killed by SIGKILL"."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"


@dataclass
class Child:
    name: str
    env: dict[str, str]
    metrics_port: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    finished: bool = False  # exited cleanly: not to be restarted
    crashed: bool = False  # left down after a crash (no restarts left): it said nothing on its way out
    started_at: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    service: str = ""  # the service it runs, when not its name (capture-front, capture-back: capture)
    first_started: float = 0.0  # wall clock of its first start (a restarted live capture continues seq from it)

    def start(self) -> None:
        # Own session: a terminal's Ctrl-C reaches only the launcher, which drains the
        # pipeline. PARENT_PID lets the service stop itself if the launcher dies (no
        # preexec_fn: running Python between fork and exec is unsafe in a threaded parent).
        env = dict(self.env, PARENT_PID=str(os.getpid()))
        self.first_started = self.first_started or time.time()
        if self.restarts and (self.service or self.name) == "capture":
            # A live source's new frames must not reuse the crashed run's seqs (services/capture).
            env.update({RESTART_ENV: str(self.restarts), STREAM_STARTED_ENV: repr(self.first_started)})
        self.proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", self.service or self.name], env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.started_at = time.monotonic()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """Its process, once started (what alive() and a poll saw running)."""
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=0.5) as r:
                return bool(r.status == 200)
        except (OSError, http.client.HTTPException):  # not up yet, or another program on the port
            return False


class Supervisor:
    def __init__(self, children: list[Child], max_restarts: int = 5, stops: StopRequests | None = None) -> None:
        self.children = {c.name: c for c in children}
        self.max_restarts = max_restarts
        self.stops = stops or StopRequests()  # not installed: nobody asks for a stop

    def _check_not_stopping(self) -> None:
        if self.stops.stopping.is_set():
            raise StartStopped("stop requested while starting: nothing more is started")

    def start(self, names: list[str], health_timeout: float = 120.0) -> None:
        """Start services in this order, each one healthy before the next starts (StartStopped
        once a stop is asked for: what is not started yet never starts)."""
        for name in names:
            self._check_not_stopping()
            child = self.children[name]
            child.start()
            self.wait_healthy(child, health_timeout)
        self._check_not_stopping()

    def start_together(self, names: list[str], health_timeout: float = 120.0) -> None:
        """Start these at once, then wait for each to be healthy (the captures of one class: a
        short file must not be over before the next camera has started)."""
        self._check_not_stopping()
        for name in names:
            self.children[name].start()
        if self.stops.stopping.is_set():  # asked for between the check and the starts: stop them now
            for name in names:
                self.signal(name, signal.SIGTERM)
        for name in names:
            self.wait_healthy(self.children[name], health_timeout)

    def wait_healthy(self, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not child.healthy():
            if self.stops.stopping.is_set():
                return  # it is stopped with the rest; the caller starts nothing more
            if not child.alive():
                code = child.process.returncode
                if code == 0 or (code in FINAL_EXIT_CODES and (child.service or child.name) == "capture"):
                    return  # finished already (a very short or unreadable source): poll() sees it
                # Any other service that gives up while starting (inference with a bundle no engine
                # here can run, missing weights) fails the start: the session could not get a report.
                raise RuntimeError(f"{child.name} exited with code {code} while starting "
                                   f"(see its log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} not healthy after {timeout:.0f} s")
            time.sleep(0.1)

    def poll(self) -> list[str]:
        """Restart services that died; returns the names that exited cleanly since last poll."""
        finished = []
        for child in self.children.values():
            if child.proc is None or child.finished or child.alive():
                continue
            code = child.proc.returncode
            child.exit_codes.append(code)
            if code in FINAL_EXIT_CODES:
                if code and (child.service or child.name) == "capture":
                    # Its stream has ended (its eos sent); the launcher's summary says why, once.
                    log.warning("%s gave up (exit %d): its stream has ended; not restarting it", child.name, code)
                elif code:
                    log.error("%s gave up (exit %d); not restarting it", child.name, code)
                child.finished = True
                finished.append(child.name)
                continue
            if child.restarts >= self.max_restarts:
                log.error("%s exited with %s and has used its %d restarts; leaving it down (pid %d %s)",
                          child.name, code, self.max_restarts, child.proc.pid, how_it_ended(code))
                child.finished = True
                child.crashed = True
                finished.append(child.name)
                continue
            child.restarts += 1
            log.warning("%s exited with %s; restarting (%d/%d): pid %d %s", child.name, code, child.restarts,
                        self.max_restarts, child.proc.pid, how_it_ended(code))
            time.sleep(min(2.0, 0.2 * child.restarts))
            child.start()
        return finished

    def signal(self, name: str, sig: int) -> None:
        child = self.children[name]
        if child.alive():
            os.kill(child.process.pid, sig)

    def stop(self, order: list[str], timeout: float = 10.0, deadline: float | None = None,
             together: bool = False) -> None:
        """SIGTERM in `order` (upstream first, so in-flight messages drain downstream).

        Each gets `timeout` seconds, and all together end by `deadline` (monotonic): then
        whatever still runs is killed, so a stop is bounded. `together`: nothing is left to drain
        (the report is on disk), so every one is told at once and they stop side by side.
        """
        if together:
            for name in order:
                if self.children[name].alive():
                    self.children[name].process.terminate()
        for name in order:
            child = self.children[name]
            child.finished = True
            if child.alive():
                if not together:
                    child.process.terminate()
                wait = timeout if deadline is None else max(0.1, min(timeout, deadline - time.monotonic()))
                if not self._wait_exit(child.process, wait):
                    if not self.stops.hurry.is_set():
                        log.warning("%s did not stop in %.1f s; killing it", name, wait)
                    child.process.kill()
                    child.process.wait()

    def _wait_exit(self, proc: subprocess.Popen[bytes], seconds: float) -> bool:
        """Whether `proc` exited within `seconds`; gives up at once on a second stop request."""
        end = time.monotonic() + seconds
        while not self.stops.hurry.is_set():
            try:
                proc.wait(max(0.0, min(0.1, end - time.monotonic())))
                return True
            except subprocess.TimeoutExpired:
                if time.monotonic() >= end:
                    return False
        return proc.poll() is not None
