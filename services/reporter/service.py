"""Reporter: the live overlay, optional recording, and the end-of-session report.

Preview frames (capture, PUB/SUB) and updates (aggregator) are matched by (stream, seq);
each matched pair is drawn (services/reporter/overlay.py), shown in a window unless
headless, and recorded when RECORD is set. On `eos` from the aggregator the report is
built from Redis (shared/data/totals.py, never from this process's memory), written
as <REPORT_DIR>/<session>.txt and .json (temp file + rename, so a reader never sees half a
report), and `report: <txt> <json>` is printed. With MESSAGING=1 the running totals go to the local MQTT
broker every MQTT_TOTALS_INTERVAL seconds, and the report and the final totals through a durable
outbox that keeps them until the broker takes them (services/reporter/outbox.py).

With LIVE_OUT set (the launcher and compose set it) every update, every drawn overlay (as
JPEG: the web service shows it, nothing draws twice) and, once the report is written, an
`eos` go out on the `live` PUB link. PUB drops what a slow or absent web cannot take, so
the reporter never waits for the page. A stream's video is drawn for the page only while a page
watches it: the web says so in Redis, read here at most once a second a session
(shared/data/live_watch.py); when that cannot be read, or no web says anything, it is drawn.

The reference system's short options are accepted (`expand_argv`): -r/--record,
-p/--path, -f/--filename, -c/--codec, -fps/--fps, -hg/--height, -w/--width, -m/--messaging,
each mapped onto its RECORD_*/MESSAGING setting.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import msgspec
import redis
from prometheus_client import Counter, Gauge

from services.reporter import overlay
from services.reporter.class_source import load_class
from services.reporter.messaging import MQTT_ERRORS, Publisher
from services.reporter.outbox import Outbox, open_outbox
from services.reporter.recording import Recorder
from services.reporter.report import build_report, mqtt_body, raw_timeline, render_text
from shared.bus.backoff import LogThrottle, backoff_delay
from shared.bus.messages import Eos, Frame, Message, Update, follow_up, make_header
from shared.data.filenames import file_part
from shared.data.journal import remove_journal
from shared.data.levels import LEVEL_LABELS
from shared.data.live_watch import Watching, WatchReader
from shared.data.marks import Mark, MarkStore, merge
from shared.data.marks_journal import read_marks, remove_marks
from shared.data.outbox import flush_command, queued_for
from shared.data.redis_retention import expire_keys
from shared.data.report_doc import Report, StoreSection, report_chunks, to_dict
from shared.data.roster import RosterError, TileLabels, TileNames, load_roster, with_names
from shared.data.running_totals import Totals
from shared.data.timeline_columns import RawTimeline
from shared.data.totals import Store, expected_streams
from shared.ops.config import LIVE_WATCH_READ, LIVE_WATCH_RETRY, report_fallback_dir
from shared.ops.service import Service
from shared.ops.settings import ReporterSettings
from shared.vision.frame_size import fit_within

REPORTS_WRITTEN = Counter("engagement_reports_written_total", "End-of-session reports written")
REPORT_ERRORS = Counter("engagement_report_errors_total", "Failed attempts to build or write a report",
                        ["reason"])
OVERLAY_FRAMES = Counter("engagement_overlay_frames_total", "Preview frames drawn with their update")
LIVE_FRAMES_SKIPPED = Counter("engagement_live_frames_skipped_total",
                              "Frames not sent to the live page (over LIVE_VIDEO_FPS for their stream); "
                              "not drawn either when nothing else needs them")
LIVE_FRAMES_UNWATCHED = Counter("engagement_live_frames_unwatched_total",
                                "Frames not drawn nor sent for the live page because no page watches their stream's "
                                "video (the web says so in Redis)")
UNMATCHED = Counter("engagement_overlay_unmatched_total",
                    "Preview frames or updates evicted without their counterpart", ["kind"])
PREVIEW_TAKEN = Gauge("engagement_preview_subscribed",
                      "1 while the reporter takes the captures' preview frames; 0 while nothing would show them "
                      "(no page watching, no recording, no window): the captures then send none")
BAD_FRAMES = Counter("engagement_bad_frames_total", "Preview frames that did not decode", ["service"])
LIVE_JPEG_QUALITY = 75  # the live page's video: small enough for a 2 FPS stream to 30 browsers

MATCH_WINDOW = 64  # frames/updates kept while waiting for their counterpart
# A file source runs ahead of the pipeline by about the sum of the links' queues; with the
# common HWM a burst of preview frames would be dropped by PUB before the reporter reads it
# (the capture's end of the link is as deep for such a file: FILE_PREVIEW_HWM).
PREVIEW_HWM = 32
REPORT_RETRY_START, REPORT_RETRY_CAP = 0.5, 10.0
MQTT_ACK_TIMEOUT = 10.0  # seconds a report waits for the local broker's PUBACK
RECOVERY_BROKER_WAIT = 3.0  # the same for a report written by REPORT_RECOVER=1 (the launcher waits on it)
# How often ended sessions without a report are looked for (a reporter killed, or down, when
# its session's eos came would otherwise never write that report).
RECOVERY_INTERVAL = 5.0

# Reference system's options -> this service's flags; value None means "a switch": given
# alone it means 1.
ALIASES: dict[str, str] = {
    "-r": "--record", "-p": "--record-path", "--path": "--record-path", "-f": "--record-filename",
    "--filename": "--record-filename", "-c": "--record-codec", "--codec": "--record-codec",
    "-fps": "--record-fps", "--fps": "--record-fps", "-hg": "--record-height", "--height": "--record-height",
    "-w": "--record-width", "--width": "--record-width", "-m": "--messaging",
}
SWITCHES = {"--record", "--messaging", "--headless"}


def expand_argv(argv: list[str]) -> list[str]:
    """Rewrite the reference system's short options onto the shared settings' flags."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        flag = ALIASES.get(name, name)
        out.append(flag + eq + value)
        if flag in SWITCHES and not eq:
            following = argv[i + 1] if i + 1 < len(argv) else None
            if following is None or not following.isdigit():
                out.append("1")
    return out


def _atomic_write(path: Path, parts: Iterable[str | bytes]) -> None:
    """`parts` (text as UTF-8) as the file's whole content, or the file as it was. Each part is written as
    it comes: a long class's report is never whole in memory (report_chunks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part.encode() if isinstance(part, str) else part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ReporterService(Service[ReporterSettings]):
    name = "reporter"
    min_hwm = {"preview": PREVIEW_HWM}
    tick_interval = 0.5

    @classmethod
    def expand_argv(cls, argv: list[str]) -> list[str]:
        return expand_argv(argv)

    def setup(self) -> None:
        s = self.settings
        self.store = Store.from_url(s.redis_url, prefix=s.redis_prefix)
        self.marks = MarkStore(self.store.r, prefix=s.redis_prefix)  # the teacher's, made on the web page
        # Say now, not at the end of the class, that reports cannot be read back.
        self.store.check(self.log, "reports wait for it")
        self.class_level_only = bool(s.class_level_only or s.eu_ai_act_mode)
        # Display names for the files on this box only (shared/data/roster.py); never read when class-level only.
        self.roster = {}
        if s.roster and not self.class_level_only:
            try:
                self.roster = load_roster(s.roster)
            except RosterError as exc:  # `engagement run` checks it first; alone, the class still gets its report
                self.log.error("%s: reports will show ids only", exc)
        self.report_dir = Path(s.report_dir)
        self.headless = bool(s.headless) if s.headless in (0, 1) else not os.environ.get("DISPLAY")
        self.frames: OrderedDict[tuple[str, int], tuple[Frame, bytes | memoryview]] = OrderedDict()
        self.updates: OrderedDict[tuple[str, int], Update] = OrderedDict()
        # One recording per stream (a class with several cameras gets a file each).
        self.recorders: dict[str, Recorder] = {}
        self.several_streams = len(expected_streams(s.streams)) > 1
        self.pending_reports: dict[str, dict[str, Any]] = {}  # session -> {attempts, next}
        self.latest_totals: dict[str, Totals] = {}  # session -> totals from the last update
        # Live video per stream at most LIVE_VIDEO_FPS: a camera read at every frame, or a file
        # played unthrottled, would otherwise spend a JPEG encode a frame on a page that shows 15.
        self.live_period = 1.0 / float(s.live_video_fps) if float(s.live_video_fps) > 0 else 0.0
        self.live_sent_at: dict[str, float] = {}  # stream -> when its last live frame went
        # Whether a page watches the live video (the web says so in Redis): no page, no drawing for it.
        self.watch = WatchReader(self.store.r, s.redis_prefix, LIVE_WATCH_READ, LIVE_WATCH_RETRY)
        self.live_watched: dict[str, tuple[bool, bool]] = {}  # session -> (known, watched): a log line on a change
        self.class_streams: dict[str, set[str]] = {}  # session -> streams updated: are they shown (_take_preview)
        PREVIEW_TAKEN.set(int(bool(s.preview_in)))  # a sub link takes everything from its start
        self.totals_sent: dict[str, int] = {}
        self.next_totals = time.monotonic() + float(s.mqtt_totals_interval)
        self.next_recovery = 0.0  # at start-up, then every RECOVERY_INTERVAL
        self.publisher = (Publisher(s.mqtt_host, int(s.mqtt_port), s.device_id, MQTT_ACK_TIMEOUT)
                          if s.messaging else None)
        # Reports and final totals wait here until the broker takes them (services/reporter/outbox.py).
        self.outbox: Outbox | None = None
        self.outbox_log = LogThrottle(60.0)
        self.totals_log = LogThrottle(60.0)  # running totals not sent while the broker is away: once a minute
        if self.publisher:
            self.outbox = open_outbox(s.report_dir, s.outbox_path, s.report_fallback_dir, self.publisher, self.stop)
            if waiting := self.outbox.queue.depth():
                self.log.warning("%d message(s) of earlier classes wait in the outbox %s: sent as soon as the "
                                 "local broker takes them", waiting, self.outbox.path)
        if not self.headless:
            try:
                cv2.namedWindow("engagement", cv2.WINDOW_NORMAL)
            except cv2.error as exc:  # the headless OpenCV build has no GUI
                self.log.warning("no window possible (%s): running headless", str(exc).strip()[:80])
                self.headless = True
        if s.report_recover and s.session_id:
            self.recover_and_exit()
            return
        self.log.info("reports to %s%s; %s; recording %s; messaging %s", self.report_dir,
                      " (class level only)" if self.class_level_only else "",
                      "headless" if self.headless else "window", "on" if s.record else "off",
                      "on" if self.publisher else "off")

    # --- messages ------------------------------------------------------------------------
    def handle(self, link: str, msg: Message) -> None:
        h = msg.header
        key = (h.stream, h.seq)
        if link == "preview":
            if isinstance(h, Frame) and self.receivers[link].subscribed:  # not one already on its way when it stopped
                self._remember(self.frames, key, (h, msg.payload), "frame")
                self._try_draw(key)
            return
        if isinstance(h, Eos):
            self.pending_reports[h.session] = {"attempts": 0, "next": 0.0}
            self._write_pending_reports()
            return
        assert isinstance(h, Update)  # the only other kind this link takes (decode checked)
        # An update carries its own stream's totals: the MQTT totals keep every stream's (Totals.carried_forward).
        self.latest_totals[h.session] = h.totals.carried_forward(self.latest_totals.get(h.session))
        if "live" in self.senders:
            self._send_live_update(h)
        streams = self.class_streams.setdefault(h.session, set())
        if h.stream not in streams:  # a new class or camera: whether its frames are wanted is known at once
            streams.add(h.stream)
            self._take_preview()
        if "preview" in self.receivers and self.receivers["preview"].subscribed:  # else no frame comes to match
            self._remember(self.updates, key, h, "update")
            self._try_draw(key)

    def _remember(self, store: OrderedDict[tuple[str, int], Any], key: tuple[str, int], value: Any, kind: str) -> None:
        store[key] = value
        while len(store) > MATCH_WINDOW:
            store.popitem(last=False)
            UNMATCHED.labels(kind).inc()

    def _try_draw(self, key: tuple[str, int]) -> None:
        if key not in self.frames or key not in self.updates:
            return
        header, payload = self.frames.pop(key)
        update = self.updates.pop(key)
        key_session = header.session
        recorder = self.recorders.get(header.stream)
        recording = bool(self.settings.record) and (recorder is None or recorder.active)
        live_due = self._live_wanted(header)
        if not (recording or live_due or not self.headless):
            return  # nobody would see this drawing: no recording, no window, no page (or its video capped)
        frame = overlay.decode_frame(header, payload)
        if frame is None:
            BAD_FRAMES.labels(self.name).inc()
            self.log.warning("preview frame %s/%d does not decode: skipped", *key)
            return
        model = update.model
        labels = model.labels or list(LEVEL_LABELS)
        # Several streams: each video shows its own stream's tally (the session's is on the page).
        totals = update.totals.stream(header.stream)
        img = overlay.draw(frame, update.faces, update.predictions, totals, labels,
                           recording=recording, baseline=model.baseline)
        OVERLAY_FRAMES.inc()
        if live_due:
            self._send_live_frame(header, img)
        if recording:
            self._record(img, key_session, header.stream)
        if not self.headless:
            cv2.imshow("engagement", img)
            cv2.waitKey(1)

    def _send_live_update(self, h: Update) -> None:
        # Class level only: nothing per student leaves for the page either.
        per_student = not self.class_level_only
        out = follow_up(h, "update", self.name, totals=h.totals, model=h.model, t_media=h.t_media,
                        predictions=h.predictions if per_student else [], faces=h.faces if per_student else [])
        self.senders["live"].send(out, droppable=True)

    def _take_preview(self) -> None:
        """The preview link takes the captures' frames only while something shows them: unsubscribed, the
        captures' PUB sockets drop each frame unsent (a 640x480 frame cost about 0.4 ms of CPU to send and as
        much to receive, for every frame of every camera, to be thrown away here)."""
        receiver = self.receivers.get("preview")
        if receiver is None:
            return
        wanted = self._preview_wanted()
        if wanted == receiver.subscribed:
            return
        receiver.subscribe(wanted)
        PREVIEW_TAKEN.set(int(wanted))
        self.log.info("preview frames %s", "taken again: something shows them" if wanted else
                      "no longer taken: nothing shows them (no page watches, no recording, no window)")

    def _preview_wanted(self) -> bool:
        if self.settings.record or not self.headless:
            return True
        if "live" not in self.senders or self.class_level_only:  # the live page gets no video
            return False
        if not self.class_streams:
            return True  # no class yet: its first frames are taken until whether a page watches is known
        return any(self._live_watched(session, stream)
                   for session, streams in self.class_streams.items() for stream in streams)

    def _live_wanted(self, header: Frame) -> bool:
        """Whether this frame goes to the live page: a page watches its stream, and it is due."""
        if "live" not in self.senders or self.class_level_only:  # class level only: no video
            return False
        if not self._live_watched(header.session, header.stream):
            LIVE_FRAMES_UNWATCHED.inc()
            return False
        return self._live_frame_due(header.stream)

    def _live_watched(self, session: str, stream: str) -> bool:
        watching = self.watch.watching(session, stream)
        state = (watching.known, watching.anything)
        if self.live_watched.get(session) != state:
            self.live_watched[session] = state
            self._say_watching(session, watching)
        return watching.covers(stream)

    def _say_watching(self, session: str, watching: Watching) -> None:
        if watching.known and watching.anything:
            self.log.info("a page watches the live video of %s: its frames are drawn for it", session)
        elif watching.known:
            self.log.info("no page watches the live video of %s: its frames are not drawn for it", session)
        elif self.watch.error:
            self.log.warning("cannot read whether a page watches the live video of %s (Redis: %s): drawing it",
                             session, self.watch.error)
        else:
            self.log.info("no web says whether a page watches the live video of %s: drawing it", session)

    def _live_frame_due(self, stream: str) -> bool:
        """Whether this stream's next live frame may go now (LIVE_VIDEO_FPS); if so, it is taken."""
        now = time.monotonic()
        if now - self.live_sent_at.get(stream, -1e9) < self.live_period:
            LIVE_FRAMES_SKIPPED.inc()
            return False
        self.live_sent_at[stream] = now
        return True

    def _send_live_frame(self, header: Frame, img: Any) -> None:
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, LIVE_JPEG_QUALITY])
        if ok:
            out = follow_up(header, "frame", self.name, width=int(img.shape[1]), height=int(img.shape[0]),
                            encoding="jpeg", t_media=header.t_media)
            self.senders["live"].send(out, jpeg.tobytes(), droppable=True)

    def _record(self, img: Any, session: str, stream: str) -> None:
        s = self.settings
        recorder = self.recorders.get(stream)
        if recorder is None:
            # Follows the capture unless set: its FPS (so it plays at the class's speed) and size.
            fps = float(s.record_fps) or float(s.fps) or 25.0
            # RECORD_WIDTH/HEIGHT bound the size, aspect kept (never a squashed 16:9 class).
            size = fit_within(img.shape[1], img.shape[0], int(s.record_width), int(s.record_height))
            folder = s.record_path or s.report_dir
            name = s.record_filename or f"{session}.avi"
            if self.several_streams:  # "<name>-<stream>.avi": one file per camera
                safe = file_part(stream, empty="")
                stem, dot, ext = name.rpartition(".")
                name = f"{stem}-{safe}.{ext}" if dot else f"{name}-{safe}"
            recorder = self.recorders[stream] = Recorder(folder, name, s.record_codec, fps, *size,
                                                         s.record_min_free_bytes)
            recorder.session = session
        recorder.write(img)

    # --- reports -------------------------------------------------------------------------
    def _write_pending_reports(self) -> None:
        now = time.monotonic()
        for session, state in list(self.pending_reports.items()):
            if now < state["next"]:
                continue
            try:
                self.write_report(session)
            except (redis.RedisError, OSError) as exc:
                state["attempts"] += 1
                delay = backoff_delay(REPORT_RETRY_START, REPORT_RETRY_CAP, state["attempts"])
                state["next"] = now + delay
                reason = "redis" if isinstance(exc, redis.RedisError) else "write"
                REPORT_ERRORS.labels(reason).inc()
                self.log.error("report of %s failed (%s: %s); retry in %.1f s", session, reason, exc, delay)
                continue
            del self.pending_reports[session]

    def write_report(self, session: str, interrupted: bool = False) -> tuple[Path, Path]:
        data, source = load_class(self.store, session, self.settings.journal_dir,
                                  report_fallback_dir(self.settings.report_fallback_dir),
                                  expected_streams(self.settings.streams), interrupted)
        try:
            stored = self.marks.for_session(session)
        except redis.RedisError:  # Redis gone: the report comes from the journal and says so
            stored = []
        if source:
            self.log.warning("report of %s: %s", session, source["note"])
        recordings = self._end_recordings(session)
        marks = self._with_journaled_marks(stored, session)
        report, txt, js = self._write_report_files(session, data, source, marks, recordings)
        # The report is on disk: the web keeps a mark made from now on in Redis alone (it looks for the report
        # after journaling a mark, shared/data/marks_journal.py). One journaled while the report was built is
        # in the file by now: read again, and the report written again with it.
        late = self._with_journaled_marks(marks, session)
        if len(late) > len(marks):
            self.log.info("report of %s: %d mark(s) made while it was written: written again with them", session,
                          len(late) - len(marks))
            report, txt, js = self._write_report_files(session, data, source, late, recordings)
        REPORTS_WRITTEN.inc()
        self._report_on_disk(session)
        self.log.info("report of %s: %d frames, %d predictions -> %s %s", session, report.totals.frames,
                      report.totals.predictions, txt, js)
        print(f"report: {txt} {js}", flush=True)
        if "live" in self.senders:  # the live page links to the finished session
            self.senders["live"].send(make_header("eos", session, report.stream, 0, time.time(),
                                                  reason="report_written"))
        if self.outbox:
            self._hand_to_outbox(session, report, raw_timeline(data, self.class_level_only))
        self.latest_totals.pop(session, None)
        self.totals_sent.pop(session, None)
        self.watch.forget(session)
        self.live_watched.pop(session, None)
        self.class_streams.pop(session, None)
        return txt, js

    def _with_journaled_marks(self, marks: list[Mark], session: str) -> list[Mark]:
        """`marks` and those the web kept on disk: those Redis lost or never had are reported too."""
        return merge(marks, read_marks(self.settings.journal_dir, session)) if self.settings.journal_dir else marks

    def _end_recordings(self, session: str) -> dict[str, str]:
        """The session's recordings end with it: {stream: path} of those that recorded frames."""
        paths = {}
        for stream, recorder in sorted(self.recorders.items()):
            if recorder.session != session:
                continue
            recorder.close()
            del self.recorders[stream]
            if recorder.frames:
                paths[stream] = str(recorder.path.resolve())
                print(f"recording: {paths[stream]}", flush=True)
        return paths

    def _write_report_files(self, session: str, data: dict[str, Any], source: dict[str, Any] | None,
                            marks: list[Mark], recordings: dict[str, str]) -> tuple[Report, Path, Path]:
        """The report built and written (to the fallback folder if REPORT_DIR refuses it), without the
        roster's names (what leaves the box), and its files (with them)."""
        report = build_report(data, self.class_level_only, time.time(), marks=marks)
        if source:
            report.store = msgspec.convert(source, StoreSection)
        for stream, path in recordings.items():  # the report says where the recordings are
            if self.several_streams:
                report.recordings = {**(report.recordings or {}), stream: path}
                for section in report.streams:
                    if section.stream == stream:
                        section.recording = path
            else:
                report.recording = path
        named = with_names(report, self.roster, self._tile_labels(session, report))
        raw = raw_timeline(data, self.class_level_only)
        try:
            return report, *self._write_files(self.report_dir, session, named, raw)
        except OSError as exc:
            # Never lose an accepted class to a folder that went away: write it elsewhere, say where.
            REPORT_ERRORS.labels("write").inc()
            fallback = report_fallback_dir(self.settings.report_fallback_dir)
            self.log.error("report of %s cannot be written to %s (%s): writing it to %s", session,
                           self.report_dir, exc, fallback)
            return report, *self._write_files(fallback, session, named, raw)

    def _report_on_disk(self, session: str) -> None:
        """Only now, with the report on disk, may the totals go: from here on Redis may evict this session
        under memory pressure (REPORTED_SESSION_TTL; compose runs Redis volatile-ttl), and the journal goes."""
        if self.settings.journal_dir:
            remove_marks(self.settings.journal_dir, session)
        remove_journal(self.settings.journal_dir, session, report_fallback_dir(self.settings.report_fallback_dir))
        try:
            self.store.report_written(session)
            expire_keys(self.store.r, self.store.session_pattern(session), self.settings.reported_session_ttl)
        except redis.RedisError as exc:  # said again by the recovery loop once Redis is back
            self.log.warning("report of %s on disk, but Redis did not take that (%s)", session, exc)

    def _hand_to_outbox(self, session: str, report: Report, raw: RawTimeline | None) -> None:
        """The report and the final totals into the durable outbox, then sent if the broker takes them."""
        assert self.outbox is not None and self.publisher is not None
        s = self.settings
        try:
            if not self.outbox.path.exists():  # its folder went away mid-class: open it again (or in the fallback)
                self.outbox.close()
                self.outbox = open_outbox(s.report_dir, s.outbox_path, s.report_fallback_dir, self.publisher, self.stop)
            self.outbox.put("report", f"{session}:report", session, to_dict(mqtt_body(report, raw=raw)))
            # A fixed id, never a counter: a reporter restarted mid-class would reuse a periodic totals' id.
            self.outbox.put("totals", f"{session}:totals:final", session, to_dict(report.totals))
            # A report recovered after a crash waits briefly: its run is over, the outbox keeps it for the next.
            self.outbox.flush(connect_timeout=RECOVERY_BROKER_WAIT if s.report_recover else MQTT_ACK_TIMEOUT)
        except sqlite3.Error as exc:  # a full or broken disk: the report is on disk, say it is not queued
            REPORT_ERRORS.labels("outbox").inc()
            self.log.error("report of %s not queued for the broker: outbox %s failed (%s); it is on disk only",
                           session, self.outbox.path, exc)
            return
        if queued_for(self.outbox.path, session):
            self.log.warning("report of %s queued for the broker: %s:%s did not take it; it is sent when it does "
                             "(this reporter, the next one, or `%s`)", session, self.settings.mqtt_host,
                             self.settings.mqtt_port,
                             flush_command(self.outbox.path, self.settings.mqtt_host, int(self.settings.mqtt_port),
                                           self.settings.device_id))

    def _tile_labels(self, session: str, report: Report) -> TileLabels:
        """The name labels facedetect read on the call tiles (GALLERY_NAMES=ocr), for the files
        on this box; none when class-level only or when Redis does not answer (ids then)."""
        if self.class_level_only:
            return {}
        streams = [st.stream for st in report.streams] or [report.stream]
        try:
            return TileNames(self.store.r, self.store.prefix).load(session, streams)
        except redis.RedisError as exc:
            self.log.warning("tile names of %s not read from Redis: %s (the report shows ids)", session, exc)
            return {}

    @staticmethod
    def _write_files(folder: Path, session: str, report: Report, raw: RawTimeline | None) -> tuple[Path, Path]:
        txt, js = folder / f"{session}.txt", folder / f"{session}.json"
        _atomic_write(js, itertools.chain(report_chunks(report, raw.raw if raw else ()), [b"\n"]))
        _atomic_write(txt, [render_text(report)])
        return txt, js

    def _recover_reports(self) -> None:
        """Queue the report of every ended session that has none yet (see RECOVERY_INTERVAL).

        Launched for one session (SESSION_ID, as `engagement run` does) only that session is
        ours; otherwise every session Redis lists as waiting for its report.
        """
        try:
            sessions = [self.settings.session_id] if self.settings.session_id else self.store.reports_pending()
            for session in sessions:
                if session in self.pending_reports:
                    continue
                if any((d / f"{session}.json").exists()
                       for d in (self.report_dir, report_fallback_dir(self.settings.report_fallback_dir))):
                    if session in self.store.reports_pending():  # written while Redis was away
                        self._report_on_disk(session)
                    continue
                if self.store.session_meta(session)["ended"] is None:
                    continue
                self.log.warning("session %s ended without its report (the reporter was down at its end): "
                                 "writing it now", session)
                self.pending_reports[session] = {"attempts": 0, "next": 0.0}
        except redis.RedisError as exc:
            self.log.debug("looking for reports to recover failed: %s", exc)

    def recover_and_exit(self) -> None:
        """REPORT_RECOVER=1: the report of SESSION_ID, whose class a crash cut short, then stop."""
        session = self.settings.session_id
        try:
            meta = self.store.session_meta(session)
            if meta["ended"] is None:
                # It ended when its last frame was counted, not now (the next start may be days later).
                last = self.store.last_prediction_time(session)
                ended = time.time() if last is None else last
                self.store.end_session(session, ended, "interrupted", class_id=meta["class"] or "",
                                       stream=meta["stream"] or "")
        except redis.RedisError as exc:  # the journal, if there is one, has the class (load_class)
            self.log.warning("Redis unreachable (%s): the report of %s comes from the journal", exc, session)
        try:
            self.write_report(session, interrupted=True)
        except (redis.RedisError, OSError) as exc:
            REPORT_ERRORS.labels("redis" if isinstance(exc, redis.RedisError) else "write").inc()
            self.log.error("report of %s not written: %s (no journal has the class)", session, exc)
        self.stop.set()

    def tick(self) -> None:
        self._take_preview()
        if time.monotonic() >= self.next_recovery:
            self.next_recovery = time.monotonic() + RECOVERY_INTERVAL
            self._recover_reports()
        self._write_pending_reports()
        if self.outbox:
            try:
                if self.outbox.queue.depth():
                    self.outbox.flush()  # only what is due, and only when connected: never stalls the overlay
            except sqlite3.Error as exc:
                if self.outbox_log.ready():  # once a minute, not every tick
                    self.log.warning("outbox %s not read: %s", self.outbox.path, exc)
        if self.publisher and time.monotonic() >= self.next_totals:
            self.next_totals = time.monotonic() + float(self.settings.mqtt_totals_interval)
            self._send_running_totals(self.publisher)

    def _send_running_totals(self, publisher: Publisher) -> None:
        """Each open session's running totals, when the broker is there. Away, they are counted and not
        waited for: a second's wait a session every interval froze the live video, and each said an error;
        they are snapshots, the report and the final totals wait in the outbox."""
        if not publisher.connected.is_set():
            MQTT_ERRORS.labels("totals").inc(len(self.latest_totals))
            if self.latest_totals and self.totals_log.ready():
                self.log.warning("running totals not sent: the local broker is away (the reports and final "
                                 "totals wait in the outbox)")
            return
        for session, totals in list(self.latest_totals.items()):
            n = self.totals_sent.get(session, 0) + 1
            self.totals_sent[session] = n
            publisher.publish("totals", f"{session}:totals:{n}", session, totals.as_map(), timeout=1.0)

    def on_stop(self) -> None:
        # A session whose eos arrived gets its report even while we stop (one last try).
        for state in self.pending_reports.values():
            state["next"] = 0.0
        self._write_pending_reports()
        for recorder in self.recorders.values():
            recorder.close()
        if self.outbox:
            self.outbox.close()
        if self.publisher:
            self.publisher.close()
        if not self.headless:
            cv2.destroyAllWindows()


if __name__ == "__main__":  # `python -m services.reporter.service -r ...`
    from shared.ops.service import main_for

    sys.exit(main_for(ReporterService, sys.argv[1:]))
