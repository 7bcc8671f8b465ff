"""Web: the teacher's live page, past sessions and the JSON API (services/web/app.py).

An output of the pipeline like the reporter, never a stage of it: it subscribes to the
reporter's `live` PUB link (the overlay as JPEG, every update, an `eos` once the report is
written), reads the session's state from Redis at start-up, and reads past sessions from
REPORT_DIR. It keeps nothing on disk and stores no frame: a restarted web shows the class
again from Redis and the link. A browser that stops reading loses items from its own
bounded queue (services/web/fanout.py); the reporter's PUB never waits for anyone. Which video
a page watches is said in Redis (services/web/watching.py): the reporter draws only that.

The HTTP server (uvicorn) runs on a thread beside the service's usual loop, which handles
the link; /metrics and /healthz are on METRICS_PORT like every service.

    engagement web --report-dir reports --port 8080      past sessions (and a class under compose)
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import redis
import uvicorn

from services.web.app import create_app
from services.web.context import WebContext
from services.web.fanout import Fanout, VideoFeeds
from services.web.live import LiveState
from services.web.restore import live_rows
from services.web.security import AllowedHosts, access_problem
from services.web.sessions import Reports
from services.web.streams import mjpeg_part, sse_event
from services.web.watching import WatchKeeper
from shared.bus.messages import Frame, Message, Update
from shared.data.marks import MarkStore
from shared.data.roster import RosterError, TileNames, load_roster
from shared.data.totals import Store
from shared.ops.config import LIVE_VIDEO_LATEST_MAX_AGE, LIVE_WATCH_REFRESH, LIVE_WATCH_TTL, report_fallback_dir
from shared.ops.service import EXIT_GAVE_UP, Service
from shared.ops.settings import WebSettings

VIDEO_QUEUE = 2  # frames waiting per browser: more is only latency
EVENTS_QUEUE = 16  # updates waiting per browser
# The live link's updates feed the alerts: a PUB drops, uncounted, what a full queue cannot take, so the queue
# holds a few seconds of a full box's updates (as the reporter's; its video frames are capped, live_frame_due).
LIVE_HWM = 512
ALIASES = {"--port": "--web-port", "--bind": "--web-bind", "--token": "--web-token"}


class WebService(Service[WebSettings]):
    name = "web"  # its one input, live, is optional: LIVE_IN empty, past sessions only
    min_hwm = {"live": LIVE_HWM}
    tick_interval = 1.0

    @classmethod
    def expand_argv(cls, argv: list[str]) -> list[str]:
        out = []
        for arg in argv:
            name, eq, value = arg.partition("=")
            out.append(ALIASES.get(name, name) + eq + value)
        return out

    def run(self) -> int:
        s = self.settings
        problem = access_problem(s.web_bind, s.web_token)
        if problem:
            self.log.error("%s", problem)
            return EXIT_GAVE_UP  # a setting to fix: restarting cannot help
        # Bound here, before anything starts: a port in use is said in one line.
        self.sock = socket.socket(socket.AF_INET6 if ":" in s.web_bind else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((s.web_bind, int(s.web_port)))
            # Listen at once: a bound socket that is not listening yet does not hold the port
            # against another SO_REUSEADDR socket, and uvicorn's own listen() would then fail late.
            self.sock.listen(128)
        except OSError as exc:
            self.sock.close()
            self.log.error("cannot serve the pages on %s:%s: %s (set WEB_PORT / --port)", s.web_bind, s.web_port,
                           exc.strerror)
            return 2
        return super().run()

    def setup(self) -> None:
        s = self.settings
        self.class_level_only = bool(s.class_level_only or s.eu_ai_act_mode)
        self.store: Store | None = None
        marks = None
        if s.redis_url:
            self.store = Store.from_url(s.redis_url, prefix=s.redis_prefix)
            marks = MarkStore(self.store.r, prefix=s.redis_prefix)  # where the reporter reads them
        roster = {}
        if s.roster and not self.class_level_only:
            try:
                roster = load_roster(s.roster)
            except RosterError as exc:  # `engagement run` checks it first; alone, the page still shows ids
                self.log.error("%s: cards show ids only", exc)
        self.live = LiveState(self.class_level_only, roster, alert_seconds=float(s.attention_alert_seconds))
        self.video = VideoFeeds("video", VIDEO_QUEUE, latest_max_age=LIVE_VIDEO_LATEST_MAX_AGE)
        self.events = Fanout("events", EVENTS_QUEUE, encode=sse_event)  # documents, encoded only for a page
        reports = Reports(s.report_dir, report_fallback_dir(s.report_fallback_dir))  # the reporter's folders
        self.context = WebContext(live=self.live, reports=reports, video=self.video,
                                  events=self.events, marks=marks, class_level_only=self.class_level_only,
                                  token=s.web_token, hosts=AllowedHosts(s.web_bind, s.web_allowed_hosts),
                                  journal_dir=s.journal_dir)
        self.restored = False
        self._restore()
        # Which video the pages watch, said in Redis: the reporter draws only that (services/web/watching.py).
        self.watch: WatchKeeper | None = None
        if self.store is not None:
            self.watch = WatchKeeper(self.store.r, s.redis_prefix, self.video, lambda: self.live.session,
                                     LIVE_WATCH_TTL, LIVE_WATCH_REFRESH, self.log)
            self.watch.start()
        if getattr(self, "sock", None) is None:  # started without run() (a test on a thread)
            self.sock = socket.create_server((s.web_bind, int(s.web_port)))
        config = uvicorn.Config(create_app(self.context), log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1, lifespan="off")
        self.server = uvicorn.Server(config)
        self.http = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="http",
                                     daemon=True)
        self.http.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.http.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError("the HTTP server did not start")
        host = s.web_bind if ":" not in s.web_bind else f"[{s.web_bind}]"
        self.url = f"http://{host}:{self.sock.getsockname()[1]}/"
        self.log.info("pages at %s%s%s", self.url, " (token required)" if s.web_token else "",
                      " (class level only)" if self.class_level_only else "")
        print(f"live: {self.url}", flush=True)

    def healthy(self) -> bool:
        return super().healthy() and getattr(self, "server", None) is not None and self.server.started

    # --- state from Redis (start-up, and a session this process has not seen) ------------
    def _restore(self, session: str | None = None) -> None:
        if self.store is None:
            return
        try:
            session = session or self.settings.session_id or self._latest_open_session()
            if session:
                streams = self.store.streams(session)
                totals = self.store.session_totals(session)
                if len(streams) > 1:  # as the aggregator's updates carry them
                    totals["streams"] = {st["stream"]: st["totals"] for st in streams}
                meta = {**self.store.session_meta(session), "streams": [st["stream"] for st in streams]}
                self.live.load(session, meta, totals, live_rows(self.store.timeline_json(session)))
                self.log.info("showing session %s from Redis (%d students)", session, len(self.live.students))
            self.restored = True
        except redis.RedisError as exc:
            self.log.warning("Redis not reachable (%s): the live page fills from the next update", exc)

    def _latest_open_session(self) -> str | None:
        assert self.store is not None
        latest, started = None, -1.0
        for session in self.store.sessions():
            meta = self.store.session_meta(session)
            if meta["ended"] is None and (meta["started"] or 0) > started:
                latest, started = session, meta["started"] or 0
        return latest

    # --- the live link -----------------------------------------------------------------
    def handle(self, link: str, msg: Message) -> None:
        session = msg.header.session
        if msg.kind == "eos":
            event = self.live.end(session)
            if event is not None:
                self.events.publish(event)
            return
        if session != self.live.session and self.store is not None and msg.kind == "update":
            self._restore(session)  # joined mid-session: what came before is in Redis
        h = msg.header
        if isinstance(h, Frame):
            if not self.class_level_only and session == self.live.session:
                self.video.publish(h.stream, mjpeg_part(msg.payload, h.t_capture, h.seq, h.stream))
            return
        if isinstance(h, Update):  # decode checked: the live link carries frame, update and eos only
            self.live.apply_update(h)
            self.events.publish_later(lambda: self.live.snapshot(history=False))

    def tick(self) -> None:
        self._read_tile_names()
        self._read_stream_ends()

    def _read_tile_names(self) -> None:
        """The names facedetect read on the call tiles (GALLERY_NAMES=ocr) are in Redis on this
        box; the cards and alerts show them (never in class-level mode: LiveState drops them)."""
        session = self.live.session
        if self.store is None or not session or self.class_level_only or self.live.ended:
            return
        try:
            labels = TileNames(self.store.r, self.store.prefix).load(session, sorted(self.live.streams))
        except redis.RedisError as exc:
            self.log.debug("tile names not read: %s", exc)
            return
        self.live.set_tile_labels(session, labels)

    def _read_stream_ends(self) -> None:
        """A stream that ended while the class goes on (a camera gone): the page says so. Its end
        is in Redis (the aggregator wrote it); nothing on the live link carries it."""
        session = self.live.session
        if self.store is None or not session or len(self.live.streams) < 2 or self.live.ended:
            return
        try:
            ends = {stream: {"ended": ended, "end_reason": reason}
                    for stream, (ended, reason) in self.store.stream_ends(session).items()}
        except redis.RedisError as exc:
            self.log.debug("stream ends not read: %s", exc)
            return
        event = self.live.set_stream_ends(session, ends)
        if event is not None:
            self.events.publish(event)

    def on_stop(self) -> None:
        watch: WatchKeeper | None = getattr(self, "watch", None)  # None too when setup stopped before it
        if watch is not None:
            watch.close()
        self.video.close()
        self.events.close()
        if getattr(self, "server", None) is not None:
            self.server.should_exit = True
            self.http.join(5)


if __name__ == "__main__":
    from shared.ops.service import main_for

    sys.exit(main_for(WebService, sys.argv[1:]))
