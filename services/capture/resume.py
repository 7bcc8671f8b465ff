"""Resume a stream after a crash when the supervisor cannot say it is a restart (Docker's
restart policy: the same container, the same environment, nothing passed along).

With CAPTURE_STATE_DIR set, a running capture keeps `<dir>/<stream>.json` (its session,
source, when the stream first started and how often it restarted) and refreshes it every
HEARTBEAT_SECONDS; a clean end (an eos sent) removes it, except a video file played to its end:
its file stays, marked `ended`, so that a restart policy that starts the capture again after its
clean exit (Docker's `unless-stopped`) does not replay the file as a new class; that capture
waits for its stop instead. A capture that starts and finds its
stream's file for the same source, refreshed within RESUME_WINDOW_SECONDS, is that stream
restarted: it keeps the session (a class is not split in two reports) and its seq continues
past the crashed run's (capture._first_seq), so its frames are not taken for repeats. A video
file resumes where it was, less resume_margin (the frames the crashed process had
queued but not yet handed on), numbered as before: the file also records how far it was played.
Replayed from its start, a file paced in real time held the class as long as it had played
(a crash at minute 30 replayed 30 minutes nobody needed), and drove facedetect's tracker back
in time.
`engagement run` restarts its captures itself (CAPTURE_RESTART, STREAM_STARTED_AT) and, unless
the directory is set, puts it in the run's folder, emptied at the run's start: a video file
restarted there resumes as under compose.

A state directory that cannot be written is said once and the capture goes on without it:
losing resumption must not lose the class.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client import Counter

from shared.data.filenames import file_part

HEARTBEAT_SECONDS = 5.0
# A resumed file starts this far before its recorded position: what the crashed process had put in
# its send queue (HWM messages and a socket buffer) was lost with it. The frames facedetect already
# took are skipped there (its engagement_frames_repeated_total), so a margin costs little. In frames
# too: the socket buffers hold one raw 640x480 frame, but dozens of a motion-JPEG file's own small
# JPEGs (5-40 KB each), which a consumer that went down with it, or libzmq's loss of a closed link's
# last messages (shared/bus/drain.py), takes away: at 2 FPS, 30 s of media.
RESUME_MARGIN_SECONDS = 5.0
RESUME_MARGIN_FRAMES = 64


def resume_margin(fps: float, own_jpegs: bool) -> float:
    """Media seconds before its recorded position a file sampled at `fps` (0: every frame) resumes from;
    `own_jpegs`: its frames travel as the file's own JPEGs (services/capture/sources.py)."""
    if own_jpegs and fps > 0:
        return max(RESUME_MARGIN_SECONDS, RESUME_MARGIN_FRAMES / fps)
    return RESUME_MARGIN_SECONDS
STATE_ERRORS = Counter("engagement_capture_state_errors_total", "Capture state files that could not be written "
                       "(a restart after a crash then starts a new stream)", ["service"])


@dataclass
class StreamState:
    session: str
    stream: str
    source: str
    started_at: float  # wall time the stream first started (before any restart)
    restarts: int = 0
    ended: bool = False  # a file source played to its end: not to be replayed by a restart
    position: float = -1.0  # a file source: media seconds of the last frame it sent (-1: none yet)

    def resume_at(self, margin: float = RESUME_MARGIN_SECONDS) -> float:
        """Media seconds a restarted file plays from (0: its start), `margin` before where it was."""
        return max(0.0, self.position - margin) if self.position >= 0 else 0.0


class StreamStateFile:
    """One stream's state file: read at start, refreshed while running, removed at a clean end."""

    def __init__(self, directory: str, stream: str, window_seconds: float, log: logging.Logger) -> None:
        self.path = Path(directory) / f"{file_part(stream)}.json"
        self.window = window_seconds
        self.log = log
        self.state: StreamState | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._broken = False

    def previous(self, source: str, session_id: str) -> StreamState | None:
        """The crashed run of this stream, if its file is fresh and names the same source (and the
        same session, when one is configured); None: a new stream."""
        try:
            age = time.time() - self.path.stat().st_mtime
            saved = StreamState(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            self.log.warning("ignoring unreadable capture state %s (%s): a new stream", self.path, exc)
            return None
        if age > self.window:
            self.log.info("capture state %s is %.0f s old (window %.0f s): a new stream", self.path, age, self.window)
            return None
        if saved.source != source or (session_id and saved.session != session_id):
            self.log.info("capture state %s is another stream's (%s, %s): a new stream",
                          self.path, saved.session, saved.source)
            return None
        return saved

    def keep(self, state: StreamState) -> None:
        """Write the state now and refresh it every HEARTBEAT_SECONDS until `clear` or `close`."""
        self.state = state
        self._write()
        self._thread = threading.Thread(target=self._beat, name="capture-state", daemon=True)
        self._thread.start()

    def clear(self) -> None:
        """The stream ended cleanly (its eos is sent): a later start is a new stream."""
        self.close()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            self.log.warning("could not remove capture state %s: %s", self.path, exc)

    def mark_ended(self) -> None:
        """A file source was played to its end (its eos is sent): a restart of this container
        must not play it again as a new class."""
        self.close()
        if self.state is not None:
            self.state.ended = True
            self._write()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._write()

    def _write(self) -> None:
        if self._broken or self.state is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(asdict(self.state)))
            os.replace(tmp, self.path)  # never a half-written file for the next start to read
        except OSError as exc:
            self._broken = True
            STATE_ERRORS.labels("capture").inc()
            self.log.warning("cannot keep capture state in %s (%s): a restart of this capture will "
                             "start a new stream", self.path.parent, exc)
