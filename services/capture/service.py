"""Capture: reads a webcam, video file or RTSP/HTTP stream and puts sampled frames on the bus.

Files are sampled by their own timestamps (`--fps 2` on a 30 FPS file keeps two frames per
second of video) and sent as fast as the pipeline takes them: blocking sends, so a slow
stage holds the file back instead of losing frames. Live sources, and files with
`--realtime`, are paced in wall-clock time and send droppably: a frame the pipeline cannot
take is dropped and counted, so latency never grows. A camera or stream that fails to open
or drops out is retried with exponential backoff (capped at RETRY_MAX_SECONDS) and reported
by a counter and an up/down gauge. Every source ends with one `eos`: end_of_file, stopped
(SIGTERM) or source_failed (unreadable file, or a camera given up on after RETRY_LIMIT); but
none when the launcher that started it died: the class stays open, and the next start in its
folder writes its report, interrupted at its last frame (services/launcher/recovery.py).
"""

from __future__ import annotations

import math
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import zmq
from prometheus_client import Counter, Gauge

from services.capture.resume import StreamState, StreamStateFile, resume_margin
from services.capture.sources import FileSource, Frame, LiveSource, ScreenSource, SourceError, classify
from shared.bus.backoff import Backoff
from shared.bus.drain import wait_until_read
from shared.bus.messages import make_header
from shared.ops.config import PHASE_ENV, RESTART_ENV, START_DELAY_ENV, START_GATE_ENV, STREAM_STARTED_ENV, from_launcher
from shared.ops.service import EXIT_GAVE_UP, Service
from shared.ops.settings import CaptureSettings
from shared.vision.frame_size import fit_image, fit_within

FRAMES_CAPTURED = Counter("engagement_frames_captured_total", "Frames put on the bus", ["service"])
FRAMES_CORRUPT = Counter("engagement_frames_corrupt_total",
                         "Frames of the source that could not be decoded and were skipped", ["service"])
SOURCE_RECONNECTS = Counter("engagement_source_reconnects_total",
                            "Attempts to reopen a camera or stream that failed or dropped out", ["service"])
WINDOW_MOVES = Counter("engagement_window_moves_total",
                       "Times a captured window was found moved or resized (the capture follows it)", ["service"])
WINDOWS_CLOSED = Counter("engagement_windows_closed_total",
                         "Captured windows that closed (their stream ends)", ["service"])
SOURCE_UP = Gauge("engagement_source_up", "1 while the video source delivers frames, 0 otherwise", ["service"])

JPEG_QUALITY = 90
FIRST_RETRY_SECONDS = 0.5
PEER_WAIT_MS = 2000  # how long the first frame waits for facedetect to connect
# A file paced like a camera (REALTIME) drops what nobody takes: played before facedetect has
# connected, its first minute would be lost, not late (a compose stack whose facedetect
# joined late reported nothing). It waits this long for its consumer before it plays.
FILE_PEER_WAIT_SECONDS = 120.0
# How long a file's last frames and its eos may take to be read once the file has ended (a stop cuts it
# short), and a stopped or failed source's eos (the frames link's linger).
FILE_DRAIN_SECONDS = 300.0
EOS_DRAIN_SECONDS = 5.0
# A file played as fast as the pipeline allows: its preview link's queue (see link_hwm).
FILE_PREVIEW_HWM = 32
# Started by the launcher with the rest of its class, a capture plays once every capture is up (the
# launcher makes START_GATE_ENV's file): at most this long, looking this often.
CLASS_START_WAIT_SECONDS = 120.0
CLASS_START_POLL_SECONDS = 0.05
# A live source read at FPS 0 (every frame) has no rate of its own: a restart assumes at most this.
LIVE_RATE_BOUND = 60.0
# Set by the launcher (like PARENT_PID: between the launcher and its child, not settings; named in
# shared/ops/config.py): on a capture it restarts after a crash, the restart's number and when the
# stream first started (RESTART_ENV, STREAM_STARTED_ENV); on each of several captures, the fraction
# of a sampling period its samples come after the first stream's (PHASE_ENV; plan.py spreads them).


def phase_delay(phase: str, period: float) -> float:
    """Seconds a stream's samples come later than the period's start: its phase (0 <= phase < 1)
    of the period. Streams started together and paced alike reached facedetect in bursts of n
    frames every period, each waiting behind the others; spread, they come one at a time."""
    try:
        fraction = float(phase or 0.0)
    except ValueError:
        return 0.0
    return (fraction % 1.0) * period if period > 0 and fraction == fraction else 0.0


def start_delay(text: str) -> float:
    """Seconds after the class's start this stream starts (its wave); 0 when not given or not a delay."""
    try:
        seconds = float(text or 0.0)
    except ValueError:
        return 0.0
    return min(seconds, CLASS_START_WAIT_SECONDS) if seconds > 0 else 0.0


def raw_payload(image: np.ndarray) -> memoryview:
    """The image's own pixels as the frame's payload, not a copy: the sockets send them without
    copying (zero-copy), and every source hands over a new image per frame that nothing writes to
    afterwards. A 640x480 copy per frame (tobytes) was a fresh 0.9 MB allocation each time: its
    page faults were a tenth of a paced capture's CPU."""
    return np.ascontiguousarray(image).data.cast("B")


def default_session_id(stream: str) -> str:
    # A random part: two captures started in the same second on one Redis must not mix totals.
    return f"{stream}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


class CaptureService(Service[CaptureSettings]):
    name = "capture"

    def setup(self) -> None:
        s = self.settings
        self.source_text = str(s.source)
        self.kind = classify(self.source_text)
        self.stream = s.stream_id
        self.state_file: StreamStateFile | None = None
        self._moves_counted = 0  # a followed window's moves counted so far (restarts with each source)
        resumed = None
        if s.capture_state_dir:
            self.state_file = StreamStateFile(s.capture_state_dir, self.stream, float(s.resume_window_seconds),
                                              self.log)
            resumed = self.state_file.previous(self.source_text, s.session_id)
        self.session = resumed.session if resumed else s.session_id or default_session_id(s.stream_id)
        self.period = 1.0 / s.fps if s.fps > 0 else 0.0  # 0: every frame of the source
        self.bound = (int(s.width), int(s.height))  # a bound, not a size: see shared/vision/frame_size.py
        self.seq = self.first_seq = self._first_seq(resumed)
        if self.state_file:
            self.state_file.keep(StreamState(
                self.session, self.stream, self.source_text,
                started_at=resumed.started_at if resumed else time.time(),
                restarts=resumed.restarts + 1 if resumed else 0,
                ended=bool(resumed and resumed.ended)))
        self.exit_code = 0
        self._told_size = False
        self.eos_reason = ""
        self.already_played = bool(resumed and resumed.ended and self.kind == "file")
        # A file resumed after a crash plays from near where it was (resume.py), numbered as before.
        # Where it plays from (resume_at) is known once the file is open: the margin depends on its frames.
        self.resumed = resumed if resumed is not None and not resumed.ended and self.kind == "file" else None
        self.resume_at = 0.0
        self.skipped = 0  # frames of a resumed file not sent again
        SOURCE_UP.labels(self.name).set(0)
        self.log.info("session %s, stream %s, source %s (%s), %s FPS, within %s, %s", self.session, self.stream,
                      self.source_text, self.kind, s.fps or "all",
                      "x".join(str(v or "native") for v in self.bound),
                      "realtime" if self.kind != "file" or s.realtime else "as fast as the pipeline allows")

    def _first_seq(self, resumed: StreamState | None) -> int:
        """0, except for a live source restarted after a crash: its frames are new data, and
        the aggregator counts each (stream, seq) once, so seq continues past every seq the
        crashed run can have used. A live run emits at most `rate` frames a second from its
        start, so the k-th frame's seq is below (now - stream start) x rate + restarts; the
        gap facedetect counts is about the frames missed while capture was down. A file
        replays from seq 0: the aggregator drops what it counted already. The restart is said
        by the launcher (environment) or found in CAPTURE_STATE_DIR (`resumed`)."""
        restart = int(from_launcher(RESTART_ENV) or 0)
        started = float(from_launcher(STREAM_STARTED_ENV) or 0)
        if restart <= 0 and resumed is not None and not resumed.ended:
            restart, started = resumed.restarts + 1, resumed.started_at
            self.log.info("resuming stream %s of session %s after a crash (restart %d, from %s)",
                          self.stream, resumed.session, restart, self.state_file.path if self.state_file else "")
        if self.kind == "file" or restart <= 0 or started <= 0:
            return 0
        rate = float(self.settings.fps) or LIVE_RATE_BOUND
        first = math.ceil(max(0.0, time.time() - started) * rate) + 2 * restart
        self.log.info("restart %d of a live source: seq continues at %d", restart, first)
        return first

    def link_hwm(self, link: str) -> int:
        """A file played as fast as the pipeline allows sends its frames in bursts (its own JPEGs are not decoded
        here: a few a millisecond while facedetect's queue has room), and PUB drops what its queue cannot hold
        before ZeroMQ's I/O thread has written any: a recording lost the last 2 of its 6 frames."""
        hwm = super().link_hwm(link)
        if link == "preview" and self.kind == "file" and not self.settings.realtime:
            return max(hwm, FILE_PREVIEW_HWM)
        return hwm

    def run(self) -> int:
        code = super().run()
        return code or getattr(self, "exit_code", 0)

    # --- sending ---------------------------------------------------------------------
    def _payload(self, image: np.ndarray) -> tuple[str, bytes | memoryview]:
        if self.settings.frame_encoding == "jpeg":
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                return "jpeg", buf.tobytes()
        return "bgr", raw_payload(image)

    def _encoded(self, frame: Frame) -> tuple[str, bytes | memoryview, int, int] | None:
        """(encoding, payload, width, height) of the frame on the bus; None when its pixels do not decode.

        A source's own JPEG that fits WIDTH x HEIGHT goes as it is (FRAME_ENCODING auto or jpeg). Decoded
        here and sent as pixels, a 640x480 frame cost the capture its decode with cold caches (twice the
        decode in a loop) and both ends' I/O threads 0.9 MB; the JPEG is ~40 KB, decoded once in facedetect."""
        if frame.jpeg is not None:
            width, height = frame.jpeg_size
            if fit_within(width, height, *self.bound) == (width, height):
                return "jpeg", raw_payload(frame.jpeg), width, height
        pixels = frame.pixels()
        if pixels is None:
            return None
        # Scaled down to fit WIDTH x HEIGHT, never stretched nor scaled up: a 16:9 webcam squashed
        # to 4:3 had narrow faces and a wrong head pose (issue 21).
        image = fit_image(pixels, *self.bound)
        if image is not pixels and not self._told_size:
            self._told_size = True
            self.log.info("frames of %dx%d are processed at %dx%d (WIDTH/HEIGHT %dx%d, aspect kept)",
                          pixels.shape[1], pixels.shape[0], image.shape[1], image.shape[0], *self.bound)
        return (*self._payload(image), image.shape[1], image.shape[0])

    def emit(self, frame: Frame, droppable: bool) -> bool:
        encoded = self._encoded(frame)
        if encoded is None:  # a kept JPEG that had to be scaled and did not decode: skipped, as a corrupt frame
            FRAMES_CORRUPT.labels(self.name).inc()
            self.log.warning("skipped frame %d of %s: it does not decode", frame.index, self.source_text)
            return False
        encoding, payload, width, height = encoded
        header = make_header("frame", self.session, self.stream, self.seq, frame.captured_at,
                             stamps={self.name: time.time()}, width=width, height=height,
                             encoding=encoding, t_media=frame.t_media, source=self.source_text)
        # Every frame takes a sequence number, sent or dropped, so downstream sees the gaps.
        self.seq += 1
        if self.state_file and self.state_file.state and frame.t_media is not None:
            self.state_file.state.position = frame.t_media  # written at the next heartbeat
        sent = self.senders["frames"].send(header, payload, droppable=droppable)
        self.senders["preview"].send(header, payload, droppable=True)
        if sent:
            FRAMES_CAPTURED.labels(self.name).inc()
        return sent

    def send_eos(self, reason: str) -> None:
        self.eos_reason = reason
        header = make_header("eos", self.session, self.stream, self.seq, time.time(),
                             stamps={self.name: time.time()}, reason=reason, source=self.source_text)
        self.senders["frames"].send(header)
        self.log.info("end of stream (%s) after %d frames%s", reason, self.seq - self.first_seq - self.skipped,
                      f" ({self.skipped} before them sent by the crashed run)" if self.skipped else "")

    # --- the loop ----------------------------------------------------------------------
    def loop(self) -> None:
        # Capture has no inputs: it overrides the poll loop, and checks `stop` between frames.
        # A droppable send before facedetect has connected is dropped: every live session lost
        # its first frame (engagement bench). Wait a moment for the consumer, never for long.
        if self.already_played:
            # Started again after a clean end (a restart policy): the class is over and reported.
            self.log.info("%s was played to its end in session %s: not playing it again; waiting to be "
                          "stopped (a new start after that plays it as a new class)", self.source_text, self.session)
            self.stop.wait()
            if self.state_file:
                self.state_file.clear()
            return
        self._wait_for_the_class()
        if self.kind == "file" and self.settings.realtime:
            self._wait_for_consumer(FILE_PEER_WAIT_SECONDS)
        else:
            self.senders["frames"].socket.poll(PEER_WAIT_MS, zmq.POLLOUT)
        if self.kind == "file":
            reason = self._run_file()
        else:
            reason = self._run_live()
        if reason == "source_failed":
            self.exit_code = EXIT_GAVE_UP
        SOURCE_UP.labels(self.name).set(0)
        if self.launcher_gone:
            # No eos: an eos would end the class as "stopped" wherever it beat the other services' own
            # stop; left open, the next start writes its report, interrupted at its last frame.
            self.log.warning("launcher gone: the class is left open for the next start to report (interrupted)")
            return
        self.send_eos(reason)
        self._drain_before_exit(reason)
        if self.state_file and reason == "end_of_file":
            self.state_file.mark_ended()  # a restart of this container must not replay the file
        elif self.state_file:
            self.state_file.clear()  # ended cleanly: the next start is a new stream

    def _drain_before_exit(self, reason: str) -> None:
        """Keep the socket open until facedetect has read the last frames and the eos: closed while facedetect
        was still behind, a capture's last messages were lost (shared/bus/drain.py), and a file of small JPEG
        frames played as fast as the pipeline allows is a dozen frames ahead when it ends. A file played to its
        end waits however long the pipeline needs (FILE_DRAIN_SECONDS at most, a stop sooner); a stopped or
        failed source as long as its socket's linger would have (its eos ends the stream)."""
        ended = reason == "end_of_file"
        bound = FILE_DRAIN_SECONDS if ended else EOS_DRAIN_SECONDS
        started = time.monotonic()
        if not wait_until_read(bound, self.stop if ended else None):
            if not self.stop.is_set() or not ended:
                self.log.warning("facedetect has not read the last frames of %s %.0f s after its end: closing",
                                 self.source_text, bound)
            return
        if ended:  # the linger covers what a consumer that never connected would take (a stop in mind)
            self.drain_seconds = max(0.0, bound - (time.monotonic() - started))
            self.senders["frames"].socket.setsockopt(zmq.LINGER, int(self.drain_seconds * 1000))

    def _wait_for_the_class(self) -> None:
        """Until every capture of the class is up (the launcher's file), a stop, or CLASS_START_WAIT_SECONDS.
        The first streams up played while the others still loaded their libraries (~0.3 s of CPU each):
        56 webcams started together held the first seconds' frames 1-2 s, in steady state under 0.12 s."""
        gate = from_launcher(START_GATE_ENV)
        if not gate:
            return  # not started by the launcher (compose, a test): nothing to wait for
        deadline = time.monotonic() + CLASS_START_WAIT_SECONDS
        while not Path(gate).exists():
            if self.stop.wait(CLASS_START_POLL_SECONDS):
                return
            if time.monotonic() > deadline:
                self.log.warning("the class's other captures not up after %.0f s: playing %s anyway",
                                 CLASS_START_WAIT_SECONDS, self.source_text)
                return
        if not from_launcher(RESTART_ENV):  # this stream's wave (launcher/plan.py); a restart goes at once
            self.stop.wait(start_delay(from_launcher(START_DELAY_ENV)))

    def _wait_for_consumer(self, seconds: float) -> None:
        """Until facedetect has connected (the frames link can take a message), a stop, or `seconds`."""
        socket, deadline, told = self.senders["frames"].socket, time.monotonic() + seconds, False
        while not self.stop.is_set() and time.monotonic() < deadline:
            if socket.poll(500, zmq.POLLOUT):
                if told:
                    self.log.info("facedetect connected: playing %s", self.source_text)
                return
            if not told and time.monotonic() > deadline - seconds + PEER_WAIT_MS / 1000:
                told = True
                self.log.info("waiting up to %.0f s for facedetect to connect before playing %s in real time",
                              seconds, self.source_text)
        if not self.stop.is_set():
            self.log.warning("nobody took frames for %.0f s: playing %s anyway (frames nobody takes are dropped "
                             "and counted)", seconds, self.source_text)

    def _run_file(self) -> str:
        try:
            source = FileSource(self.source_text, keep_jpeg=self.settings.frame_encoding != "bgr")
        except SourceError as exc:
            self.log.error("source failed: %s", exc)
            return "source_failed"
        if source.jpeg:
            self.log.info("%s is motion JPEG: its frames go on as the file's own JPEGs, decoded in facedetect",
                          self.source_text)
        margin = resume_margin(self.settings.fps, source.jpeg)
        self.resume_at = self.resumed.resume_at(margin) if self.resumed else 0.0
        SOURCE_UP.labels(self.name).set(1)
        realtime = bool(self.settings.realtime)
        next_t = 0.0  # media time of the next frame to keep
        # Paced from the resumed position (0 on a first start): its first frame is due now.
        started = time.monotonic() + phase_delay(from_launcher(PHASE_ENV), self.period) - self.resume_at
        started_wall = time.time() + (started - time.monotonic())  # the wall time media time 0 is due at
        if self.resume_at:
            self.log.info("resuming %s at %.1f s of media (%.0f s before where the crashed run last said it "
                          "was): the frames before keep their seqs and are not sent again", self.source_text,
                          self.resume_at, margin)
        try:
            while not self.stop.is_set():
                # The first frame at or after the sampling instant (next_t stays 0 at FPS 0: every frame).
                frame = source.read(wanted_from=next_t)
                self._count_corrupt(source)
                if frame is None:
                    break
                assert frame.t_media is not None  # a file's frames always carry their media time
                while self.period and next_t <= frame.t_media + 1e-6:
                    next_t += self.period
                if frame.t_media + 1e-6 < self.resume_at:
                    self.seq += 1  # sent by the crashed run: the same number, not sent again
                    self.skipped += 1
                    continue
                if realtime:
                    wait = started + frame.t_media - time.monotonic()
                    if wait > 0 and self.stop.wait(wait):
                        break
                    # A paced file is "captured" when its time comes, as a camera takes its frame then
                    # whether or not this process runs: a late wake-up (a busy box) counts in the delay.
                    frame.captured_at = started_wall + frame.t_media
                self.emit(frame, droppable=realtime)
        finally:
            source.release()
        if self.stop.is_set():
            return "stopped"
        if self.seq == self.first_seq:
            self.log.error("source failed: no decodable frame in %s", self.source_text)
            return "source_failed"
        return "end_of_file"

    def _count_corrupt(self, source: FileSource | LiveSource) -> None:
        counted = getattr(self, "_corrupt_counted", 0)
        if source.corrupt > counted:
            FRAMES_CORRUPT.labels(self.name).inc(source.corrupt - counted)
            self._corrupt_counted = source.corrupt

    def _open_source(self) -> LiveSource | ScreenSource:
        if self.kind == "screen":
            return ScreenSource(self.source_text, float(self.settings.fps))
        return LiveSource(self.source_text)

    def _open_live(self, reconnect: bool) -> LiveSource | ScreenSource | None:
        """Open the camera/stream, retrying with capped exponential backoff; None = give up/stop."""
        failures = 0
        limit = int(self.settings.retry_limit)
        if self.kind == "screen" and not limit:
            limit = 3  # a window or display that is not there is a user error, not a camera to wait for
        while not self.stop.is_set():
            if reconnect:
                # Back off before every reopen (also after a drop-out), so a camera that opens
                # and dies at once is not hammered; the delay resets once frames flow again.
                delay = self._retry.next_delay()
                self.log.info("reconnecting to %s in %.1f s", self.source_text, delay)
                if self.stop.wait(delay):
                    return None
                SOURCE_RECONNECTS.labels(self.name).inc()
            try:
                source = self._open_source()
            except SourceError as exc:
                failures += 1
                SOURCE_UP.labels(self.name).set(0)
                if limit and failures >= limit:
                    self.log.error("giving up on %s after %d failed attempts: %s", self.source_text, failures, exc)
                    return None
                self.log.warning("%s (attempt %d)", exc, failures)
                reconnect = True
                continue
            SOURCE_UP.labels(self.name).set(1)
            self.log.info("source %s open", self.source_text)
            return source
        return None

    def _count_moves(self, source: LiveSource | ScreenSource) -> None:
        moves: int = getattr(source, "moves", 0)
        if moves > self._moves_counted:
            WINDOW_MOVES.labels(self.name).inc(moves - self._moves_counted)
            self._moves_counted = moves

    def _read_live(self, source: LiveSource | ScreenSource, next_emit: float) -> tuple[bool, Frame | None]:
        """(whether a frame is due, the frame: None when the source dropped out). A screen source paces
        itself; a camera's or stream's every frame is grabbed, so the driver's buffer stays fresh, and
        only those sent are decoded: a 30 FPS webcam sampled at 2 FPS decoded 15 frames a frame sent."""
        if isinstance(source, ScreenSource):
            frame = source.read()
            self._count_moves(source)
            return True, frame
        if not source.grab():
            return True, None
        if time.monotonic() < next_emit:
            return False, None
        return True, source.retrieve()

    def _run_live(self) -> str:
        self._retry = Backoff(FIRST_RETRY_SECONDS, float(self.settings.retry_max_seconds))
        next_emit = time.monotonic() + phase_delay(from_launcher(PHASE_ENV), self.period)
        reconnect = False
        while not self.stop.is_set():
            source = self._open_live(reconnect)
            if source is None:
                return "stopped" if self.stop.is_set() else "source_failed"
            reconnect = True
            self._moves_counted = 0
            try:
                while not self.stop.is_set():
                    due, frame = self._read_live(source, next_emit)
                    if not due:
                        continue
                    if frame is None and getattr(source, "closed", False):
                        # A closed window is the end of that stream, not a drop-out to wait out.
                        WINDOWS_CLOSED.labels(self.name).inc()
                        self.log.warning("window of %s closed: ending the stream", self.source_text)
                        return "window_closed"
                    if frame is None:
                        self.log.warning("source %s dropped out", self.source_text)
                        SOURCE_UP.labels(self.name).set(0)
                        break
                    self._retry.reset()
                    now = time.monotonic()
                    next_emit = max(next_emit + self.period, now) if self.period else now
                    self.emit(frame, droppable=True)
            finally:
                source.release()
        return "stopped"
