"""The skeleton every service runs in: settings, logging, metrics, sockets, poll loop, shutdown.

A service subclass gets its input and output links, and the kinds each input accepts, from
the link table (shared/bus/links.py) by its `name`, then implements `handle` (one valid
message) and optionally `tick` (called about every `tick_interval` seconds), `after_turns` (after each
run of messages) and `on_stop`.
SIGTERM/SIGINT set `stop`; the loop ends, `on_stop` runs, sockets close with linger so
queued control messages still leave.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any, ClassVar, Generic, TypeVar

import zmq

from shared.bus import metrics
from shared.bus.bus import Receiver, Sender, stop_authenticator
from shared.bus.links import BY_NAME, expected_by, inputs_of, outputs_of
from shared.bus.messages import Message
from shared.ops import cpu_budget
from shared.ops.assets import MissingAsset
from shared.ops.config import GATHER_SECONDS, PARENT_PID_ENV, SettingError, from_launcher, load_settings
from shared.ops.logs import setup_logging
from shared.ops.secret_check import redis_url_problem
from shared.ops.settings import Settings
from shared.ops.signal_log import say

# Exit code of a service that ended deliberately and must not be restarted: a source that
# cannot be read, a certificate that will never be accepted. Retrying cannot fix either.
EXIT_GAVE_UP = 3


S = TypeVar("S", bound=Settings)


# Turns of one message a link taken on one poll before the tick gets its turn (Service._take_turns).
DRAIN_MAX = 16


class Service(Generic[S]):
    """A service with its typed settings `S` (its Struct of shared/ops/settings.py)."""

    name: ClassVar[str] = "service"
    # Derived from the link table for each subclass (__init_subclass__), never restated by a service:
    inputs: ClassVar[dict[str, str]] = {}  # link name -> settings attribute (e.g. "frames_in")
    outputs: ClassVar[dict[str, str]] = {}
    expect: ClassVar[dict[str, tuple[str, ...]]] = {}  # link -> accepted message kinds
    min_hwm: ClassVar[dict[str, int]] = {}  # link -> a deeper queue than the common HWM
    tick_interval: ClassVar[float] = 0.5

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # An optional link (acks, live) is in the table too: its settings default to empty and
        # open_sockets skips it then.
        cls.inputs, cls.outputs, cls.expect = inputs_of(cls.name), outputs_of(cls.name), expected_by(cls.name)

    def __init__(self, settings: S) -> None:
        self.settings: S = settings
        self.log = logging.getLogger(self.name)
        self.stop = threading.Event()
        # Seconds what is still queued may take to leave once the loop has ended without a stop (0: the
        # sockets' linger): a source that ends sets it, as its last messages must reach their consumer.
        self.drain_seconds = 0.0
        # The launcher died (killed, OOM): the class was cut short, not stopped, and the next
        # start reports it as interrupted; a source must not end it as if a user had stopped it.
        self.launcher_gone = False
        self.state = "starting"
        metrics.SERVICE_STATE.labels(self.name).state("starting")
        self.receivers: dict[str, Receiver] = {}
        self.senders: dict[str, Sender] = {}
        self._processing = metrics.PROCESSING_SECONDS.labels(self.name)
        # Seconds the messages gather after a run of them is handled, before the next poll (0: woken for each).
        gather = settings.gather_seconds
        self.gather_seconds = gather if gather >= 0 else GATHER_SECONDS.get(self.name, 0.0)

    # --- lifecycle hooks ------------------------------------------------------------
    def setup(self) -> None:
        """Load models, connect to stores. Runs before sockets open."""

    def handle(self, link: str, msg: Message) -> None:
        raise NotImplementedError

    def after_turns(self) -> None:
        """Called after each run of messages (the aggregator writes the frames the run brought in one go)."""

    def tick(self) -> None:
        """Periodic work (timeouts, flushes)."""

    def on_stop(self) -> None:
        """Last work before sockets close."""

    @classmethod
    def expand_argv(cls, argv: list[str]) -> list[str]:
        """Rewrite service-specific short options (the reporter's) before the shared parser."""
        return argv

    # --- machinery -----------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state
        metrics.SERVICE_STATE.labels(self.name).state(state)

    def healthy(self) -> bool:
        # A deliberate stop is healthy: the orchestrator must not restart us mid-shutdown.
        return self.state in ("running", "stopping")

    def link_hwm(self, link: str) -> int:
        """The queue of this service's end of `link`: the common HWM, the link's own, or the service's deeper one."""
        return max(self.settings.hwm, BY_NAME[link].queue, self.min_hwm.get(link, 0))

    def expected_kinds(self, link: str) -> tuple[str, ...] | None:
        """The kinds this service's end of input `link` accepts: the table's, unless the service takes more."""
        return self.expect.get(link)

    def open_sockets(self) -> None:
        s = self.settings
        # An optional link left empty (ACKS_*) is not opened: the service works without it.
        for link, attr in self.outputs.items():
            if getattr(s, attr):
                self.senders[link] = Sender(self.name, getattr(s, attr), self.stop, self.link_hwm(link),
                                            s.curve_server_key, link=link)
        for link, attr in self.inputs.items():
            if getattr(s, attr):
                self.receivers[link] = Receiver(self.name, getattr(s, attr), self.link_hwm(link), s.curve_server_key,
                                                self.expected_kinds(link), link=link)

    def request_stop(self, *_: object) -> None:
        # Also the SIGTERM handler: the stop first, the line after it (shared/ops/signal_log.py).
        first = not self.stop.is_set()
        self.stop.set()
        if first:
            say(self.log, logging.INFO, "stop requested")

    def _watch_parent(self, parent_pid: int) -> None:
        # Started by the local launcher: stop cleanly if it goes away (no orphans).
        while not self.stop.wait(1.0):
            if os.getppid() != parent_pid:
                self.log.warning("launcher (pid %d) is gone: stopping", parent_pid)
                self.launcher_gone = True
                self.request_stop()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)
        parent = from_launcher(PARENT_PID_ENV)
        if parent and parent.isdigit():
            threading.Thread(target=self._watch_parent, args=(int(parent),), daemon=True).start()
        # An example password must not reach a deployment: one line, and no restart (EXIT_GAVE_UP).
        if problem := redis_url_problem(str(getattr(self.settings, "redis_url", ""))):
            self._set_state("failed")
            self.log.error("refusing to start: %s", problem)
            return EXIT_GAVE_UP
        try:
            metrics.serve(self.settings.metrics_host, self.settings.metrics_port, self.healthy, lambda: self.state)
        except OSError as exc:  # another process has the port (a second `engagement web`): one line
            self._set_state("failed")
            self.log.error("cannot serve metrics on %s:%s: %s (set METRICS_PORT)", self.settings.metrics_host,
                           self.settings.metrics_port, exc.strerror or exc)
            return 2
        try:
            # Per process, before any model loads (a service run on a test's thread keeps the test's).
            budget = cpu_budget.apply_settings(self.settings)
        except cpu_budget.BadAffinity as exc:  # will not fix itself: one line, no restart
            self._set_state("failed")
            self.log.error("refusing to start: %s", exc)
            return EXIT_GAVE_UP
        if budget:
            self.log.info("cpu budget: %s", budget)
        try:
            self.start()
        except Exception as exc:
            self._set_state("failed")
            # Missing weights, a detector this OpenCV cannot load: the user's to fix, said in one line.
            if isinstance(exc, MissingAsset) or getattr(exc, "user_error", False):
                self.log.error("refusing to start: %s", exc)
                return EXIT_GAVE_UP
            self.log.exception("start-up failed")
            return 2
        self.log.info("running")
        try:
            self.loop()
        finally:
            self.finish()
            if self.drain_seconds and not self.stop.is_set():
                if not _flush_context(self.drain_seconds, self.stop):
                    self.log.warning("what was still queued did not leave within %.0f s%s: exiting without it",
                                     self.drain_seconds, " (a stop was requested)" if self.stop.is_set() else "")
            else:
                _flush_context()
        self.log.info("stopped")
        return 0

    def start(self) -> None:
        """Set up and open the sockets; `run` does this, and tests that drive a service on a
        thread (signal handlers are the main thread's) call start, loop and finish themselves."""
        self.setup()
        self.open_sockets()
        self._set_state("running")

    def finish(self) -> None:
        self._set_state("stopping")
        try:
            self.on_stop()
        finally:
            socks: list[Sender | Receiver] = [*self.senders.values(), *self.receivers.values()]
            for sock in socks:
                sock.close()

    def loop(self) -> None:
        poller = zmq.Poller()
        for receiver in self.receivers.values():
            poller.register(receiver.socket, zmq.POLLIN)
        next_tick = time.monotonic()
        while not self.stop.is_set():
            timeout_ms = max(0, int((next_tick - time.monotonic()) * 1000))
            if not self.receivers:
                self.stop.wait(timeout_ms / 1000)
            elif poller.poll(timeout_ms):
                drained = self._take_turns()
                self.after_turns()
                # The next messages gather meanwhile: one wake-up a run of them. Not while more wait (DRAIN_MAX
                # turns were not enough): a service behind would fall further behind at every pause.
                if self.gather_seconds and drained:
                    self.stop.wait(self.gather_seconds)
            if time.monotonic() >= next_tick:
                for receiver in self.receivers.values():
                    receiver.heal()
                for sender in self.senders.values():
                    sender.heal()
                self.tick()
                next_tick = time.monotonic() + self.tick_interval

    def _take_turns(self) -> bool:
        """One waiting message of each link in turn, turn after turn while any waits (up to DRAIN_MAX turns): a run
        of messages on one poll, ZeroMQ's own flag saying whether one waits (pyzmq's Socket.poll made a Poller for
        every message), and the links interleaved as their messages come, as one poll a message had them (the
        reporter draws each preview frame with its update: a link read to its end first had the class's eos
        handled, and its recording closed, before the last frames were read)."""
        links = list(self.receivers)
        for _ in range(DRAIN_MAX):
            handled = [link for link in links if self._handle_one(link)]
            if not handled or self.stop.is_set():
                return True
        return False  # messages may still wait

    def _handle_one(self, link: str) -> bool:
        """Handle the message waiting on `link`, if one does (a bad one is counted and skipped); False if none.
        Nothing waiting includes a socket a handler drained itself (inference reads its acks and the batches
        behind one): a blocking read there would wait for the next message, and never see a stop if none came."""
        receiver = self.receivers[link]
        if not receiver.waiting():
            return False
        msg = receiver.read()
        if msg is None:
            return True
        started = time.perf_counter()
        try:
            self.handle(link, msg)
        except Exception:
            # A message that breaks a handler is counted and skipped, never fatal.
            metrics.MESSAGES_REJECTED.labels(self.name, "handler_error").inc()
            self.log.exception("failed to handle a %s message", msg.kind)
        self._processing.observe(time.perf_counter() - started)
        return True


def _flush_context(timeout: float = 6.0, stop: threading.Event | None = None) -> bool:
    """Let queued messages leave before the process exits; whether they all did.

    LINGER only works while the context terminates: a process that exits without term()
    loses what is still queued (capture's last frames and its eos went missing this way).
    term() waits for the linger of closed sockets but blocks forever on any socket left
    open, so it runs in a daemon thread with a bound a little over the 5 s linger; a `stop`
    set meanwhile ends the wait (a drain that may be long must not hold a stop).
    """
    stop_authenticator()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    done = threading.Thread(target=ctx.term, name="zmq-term", daemon=True)
    done.start()
    deadline = time.monotonic() + timeout
    while done.is_alive() and time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        done.join(0.1)
    return not done.is_alive()


def main_for(service_cls: type[Service[Any]], argv: list[str] | None = None) -> int:
    try:
        settings = load_settings(service_cls.name,
                                 service_cls.expand_argv(list(sys.argv[1:] if argv is None else argv)))
    except SettingError as exc:  # a user's mistake: one line, no traceback
        print(f"engagement {service_cls.name}: {exc}", file=sys.stderr)
        return 2
    setup_logging(service_cls.name, settings.log_level)
    return service_cls(settings).run()
