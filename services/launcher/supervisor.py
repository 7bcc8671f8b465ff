"""Runs each service as its own OS process, restarts the ones that die, stops them in order.

What `restart: on-failure` does in compose, done here for local runs: a service that exits
with an error or is killed comes back (at most `max_restarts` times, with a short backoff),
while one that exits cleanly (capture after end of stream) stays down.
"""

from __future__ import annotations

import http.client
import logging
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from shared.service import EXIT_GAVE_UP

log = logging.getLogger("launcher")
FINAL_EXIT_CODES = (0, EXIT_GAVE_UP)


@dataclass
class Child:
    name: str
    env: dict[str, str]
    metrics_port: int
    proc: subprocess.Popen | None = None
    restarts: int = 0
    finished: bool = False  # exited cleanly: not to be restarted
    started_at: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    service: str = ""  # the service it runs, when not its name (capture-front, capture-back: capture)

    def start(self) -> None:
        # Own session: a terminal's Ctrl-C reaches only the launcher, which drains the
        # pipeline. PARENT_PID lets the service stop itself if the launcher dies (no
        # preexec_fn: running Python between fork and exec is unsafe in a threaded parent).
        env = dict(self.env, PARENT_PID=str(os.getpid()))
        self.proc = subprocess.Popen([sys.executable, "-m", "shared.cli", self.service or self.name], env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=0.5) as r:
                return r.status == 200
        except (OSError, http.client.HTTPException):  # not up yet, or another program on the port
            return False


class Supervisor:
    def __init__(self, children: list[Child], max_restarts: int = 5) -> None:
        self.children = {c.name: c for c in children}
        self.max_restarts = max_restarts

    def start(self, names: list[str], health_timeout: float = 120.0) -> None:
        """Start services in this order, each one healthy before the next starts."""
        for name in names:
            child = self.children[name]
            child.start()
            self.wait_healthy(child, health_timeout)

    def start_together(self, names: list[str], health_timeout: float = 120.0) -> None:
        """Start these at once, then wait for each to be healthy (the captures of one class: a
        short file must not be over before the next camera has started)."""
        for name in names:
            self.children[name].start()
        for name in names:
            self.wait_healthy(self.children[name], health_timeout)

    def wait_healthy(self, child: Child, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not child.healthy():
            if not child.alive():
                code = child.proc.returncode
                if code == 0 or (code in FINAL_EXIT_CODES and (child.service or child.name) == "capture"):
                    return  # finished already (a very short or unreadable source): poll() sees it
                # Any other service that gives up while starting (inference with a bundle no engine
                # here can run, missing weights) fails the start: the session could not get a report.
                raise RuntimeError(f"{child.name} exited with code {child.proc.returncode} while starting "
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
                log.error("%s exited with %s and has used its %d restarts; leaving it down",
                          child.name, code, self.max_restarts)
                child.finished = True
                finished.append(child.name)
                continue
            child.restarts += 1
            log.warning("%s exited with %s; restarting (%d/%d)", child.name, code, child.restarts,
                        self.max_restarts)
            time.sleep(min(2.0, 0.2 * child.restarts))
            child.start()
        return finished

    def signal(self, name: str, sig: int) -> None:
        child = self.children[name]
        if child.alive():
            os.kill(child.proc.pid, sig)

    def stop(self, order: list[str], timeout: float = 10.0, deadline: float | None = None) -> None:
        """SIGTERM in `order` (upstream first, so in-flight messages drain downstream).

        Each gets `timeout` seconds, and all together end by `deadline` (monotonic): then
        whatever still runs is killed, so a stop is bounded.
        """
        for name in order:
            child = self.children[name]
            child.finished = True
            if child.alive():
                child.proc.terminate()
                wait = timeout if deadline is None else max(0.1, min(timeout, deadline - time.monotonic()))
                try:
                    child.proc.wait(wait)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.1f s; killing it", name, wait)
                    child.proc.kill()
                    child.proc.wait()
