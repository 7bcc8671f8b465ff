"""Face detection: every face of every frame, a stable student id per face, crops for the model.

One `faces` message per `frame` (an empty face list included), so downstream stages see
every frame. Sequence gaps on the frames link (frames capture dropped, or lost) are counted
as dropped frames; a frame whose pixels do not decode is counted and skipped.

With GALLERY_NAMES=ocr the call tiles' name labels are read now and then (a label changes
rarely): when a tile appears or moves, when its label did not read for NAME_RETRY_SECONDS, and
every NAME_REFRESH_SECONDS. They key students across reflows (gallery.py) and are kept in Redis
on this box for the reports (shared/data/roster.py TileNames); they are never in a bus message.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import redis
from prometheus_client import Counter, Histogram

from services.facedetect.appearance import Appearance
from services.facedetect.follow import Follower
from services.facedetect.gallery import TileTracker, find_tiles
from services.facedetect.holdback import Held, Holdback
from services.facedetect.names import LabelReader, OcrMissing
from services.facedetect.ranges import Ranges
from services.facedetect.student_ids import StudentIds
from services.facedetect.tracker import SetAside, Tracker, iou
from shared.bus import metrics
from shared.bus.messages import MAX_FACES, Eos, Frame, Message, Payload, follow_up
from shared.data.roster import TileNames
from shared.data.totals import Store
from shared.ops import cpu_budget
from shared.ops.service import Service
from shared.ops.settings import FacedetectSettings
from shared.vision.detectors import Detection, crop_face, make_detector, with_slices

FACES_DETECTED = Counter("engagement_faces_detected_total", "Faces found in frames", ["service"])
DETECT_RUNS = Counter("engagement_detect_runs_total",
                      "Frames the face detector ran on, by why (first, due, lost, change, gallery); "
                      "'followed' counts frames whose faces were followed instead", ["service", "reason"])
DETECT_SECONDS = Histogram("engagement_detect_seconds", "Time the face detector takes for one frame",
                           ["service", "detector"], buckets=metrics.LATENCY_BUCKETS)
TILE_SEARCHES = Counter("engagement_gallery_tile_faces_total",
                        "Faces found only by searching a gallery tile at its own scale", ["service"])
DETECT_RANGES = Counter("engagement_detect_ranges_total",
                        "Detections by the BlazeFace models run (ranges.py): short (every face near: short-range "
                        "alone), short+both (it found fewer faces, both ran), both", ["service", "ran"])
SLICED_FRAMES = Counter("engagement_sliced_frames_total",
                        "Frames also searched in overlapping slices: their faces were small for the whole frame",
                        ["service"])
# Slices that found no face the frame's pass missed are searched again after this long, not at
# every detection: they cost about 10 times the pass (bench/frame_size.py).
SLICE_RECHECK_SECONDS = 2.0
# Wall-clock seconds after which a silent stream's tracks and sequence state are dropped.
STREAM_IDLE_SECONDS = 60.0
NAME_READS = Counter("engagement_gallery_name_reads_total",
                     "Tile name labels read by OCR, by outcome (name, none: nothing that reads as a name)",
                     ["service", "outcome"])
# A restarted file source plays again from a little before where it was (capture/resume.py): the
# frames this process already took are skipped here, so the tracker never sees its time go back
# (a compose check's restart replayed the file from its start: faces were followed back in time and
# set aside as "seen -3.0 s").
FRAMES_REPEATED = Counter("engagement_frames_repeated_total",
                          "Frames skipped because they repeat a seq already processed (a restarted file "
                          "source replaying)", ["service"])
NAME_STORE_ERRORS = Counter("engagement_gallery_name_store_errors_total",
                            "Tile names that could not be saved to Redis (the ids are unaffected)", ["service"])
NAME_RETRY_SECONDS = 2.0
NAME_REFRESH_SECONDS = 30.0
NAME_STORE_RETRY_SECONDS = 10.0
# A stream without a grid is looked at again for one this often, not every frame: the grid
# search cost more than BlazeFace on a camera's frames (a third of facedetect's time at 78
# frames/s, 18 ms a 1920x1080 frame); a call's grid that appears is found within this.
GRID_RECHECK_SECONDS = 1.0
GALLERY_FOLLOW = "\x00gallery"  # the follower's key of a stream's call grid, beside its plain one
# ... unless it showed one this recently: a reflow (someone joins or leaves) can hide the grid
# for a frame, and the frames after it must not lose their tile ids for a second.
GRID_RECENT_SECONDS = 30.0
SET_ASIDE = Counter("engagement_detections_set_aside_total",
                    "Detections never made students (short_lived: seen under TRACK_MIN_SECONDS; not_a_face: the "
                    "face mesh's score), one per tentative face", ["service", "reason"])
HELD_TOO_LONG = Counter("engagement_faces_held_too_long_total",
                        "New faces sent without, because their frames waited past the holdback's bound", ["service"])
SET_ASIDE_STORE_ERRORS = Counter("engagement_set_aside_store_errors_total",
                                 "Set-aside counts that could not be written to Redis yet (retried)", ["service"])
GALLERY_FRAMES = Counter("engagement_gallery_frames_total",
                         "Frames by whether a participant grid was found (gallery) or not (plain detection)",
                         ["service", "mode"])


def decode_image(frame: Frame, payload: Payload) -> np.ndarray | None:
    """The frame's pixels as a BGR array, or None when they do not decode. A raw frame's array is
    a read-only view of the received message (no copy): what draws on it copies it first."""
    if frame.encoding == "bgr":
        return np.frombuffer(payload, dtype=np.uint8).reshape(frame.height, frame.width, 3)  # size checked
    image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3:
        return None
    return image


class FaceDetectService(Service[FacedetectSettings]):
    name = "facedetect"

    def setup(self) -> None:
        s = self.settings
        # Small faces in a large frame with no grid seen (tiles that touch, a class from the back) are
        # searched in overlapping slices at the detector's own scale (shared/vision/sliced.py).
        self.detector = with_slices(make_detector(s.detector, s.confidence, Path(s.models_dir),
                                                  cpu_budget.litert_threads(1)))
        # A call's whole frame (25 faces of ~150 px at 1920x1080): res10 finds them all in one
        # pass where BlazeFace's 128 px view finds a few and leaves 20 tiles to search one by one
        # (2 FPS against 1.4 in engagement bench-gallery). A detector named explicitly is kept.
        self.frame_detector = (make_detector("dnn", s.confidence, Path(s.models_dir))
                               if s.detector == "auto" and s.gallery == "auto" else self.detector.inner)
        self.follower = Follower(s.detect_every)
        self.ranges = Ranges()
        # One numbering a stream for its plain frames' faces and its call tiles: a stream that switches
        # between the two must never give two people one id (student_ids.py).
        self.student_ids = StudentIds()
        self.tracker = Tracker(s.track_iou, s.track_max_age, reid_seconds=s.reid_seconds,
                               min_seconds=s.track_min_seconds, ids=self.student_ids)
        self.appearance = Appearance(Path(s.models_dir), cpu_budget.litert_threads(1))
        self.holdback = Holdback()
        self.set_aside: dict[str, dict[str, int]] = {}  # session -> reason -> count, not in Redis yet
        self.set_aside_store = Store.from_url(s.redis_url, s.redis_prefix)
        self.set_aside_retry_at = 0.0
        self.tiles = TileTracker(s.track_max_age, self.student_ids)
        self.gallery = s.gallery == "auto"
        # Names are personal data: not even read when reports are class-level only.
        self.read_names = (self.gallery and s.gallery_names == "ocr"
                           and not (s.class_level_only or s.eu_ai_act_mode))
        self.labels: LabelReader | None = None
        self.tile_names: TileNames | None = None
        if self.read_names:
            try:
                self.labels = LabelReader()
            except OcrMissing as exc:  # the class still runs: ids by tile place and look
                self.log.error("%s: tile names are not read", exc)
                self.read_names = False
        if self.read_names:
            self.tile_names = TileNames(redis.Redis.from_url(s.redis_url, socket_timeout=2.0,
                                                             socket_connect_timeout=2.0), s.redis_prefix)
        # Per stream: each tile place's last label read (tile, when, text or None).
        self.label_reads: dict[tuple[str, str], list[tuple[tuple[int, int, int, int], float, str | None]]] = {}
        self.saved_names: dict[tuple[str, str], dict[int, str]] = {}
        self.names_retry_at = 0.0  # after a Redis error: not before (a down Redis must not stall every frame)
        self.crop_size = int(s.crop_size)
        self.last_seq: dict[tuple[str, str], int] = {}
        self.repeat_told: dict[tuple[str, str], int] = {}  # the last seq a replay was said for
        self.last_wall: dict[tuple[str, str], float] = {}
        # Frame times (media time of a file, capture time of a live source), not this process's clock:
        # a file read faster than real time must be searched at the same frames on every run (on
        # the clock, a fast machine searched fewer frames of a clip than a slow one, issue 21).
        self.no_grid_at: dict[tuple[str, str], float] = {}  # when a stream's last grid search found none
        self.grid_seen_at: dict[tuple[str, str], float] = {}  # when it last found one
        self.slices_fruitless_at: dict[tuple[str, str], float] = {}  # when slices last added no face
        self.log.info("detector %s (confidence %.2f, every %d frames), crops %dpx", self.detector.name,
                      s.confidence, self.follower.every, self.crop_size)

    def handle(self, link: str, msg: Message) -> None:
        frame = msg.header
        key = (frame.session, frame.stream)
        if isinstance(frame, Eos):
            self._forget(key)
            self._save_set_aside()
            self.senders["faces"].send(follow_up(msg, "eos", self.name, reason=frame.reason, source=frame.source))
            return
        assert isinstance(frame, Frame)  # the only other kind this link takes (decode checked)
        if self._repeats(key, frame.seq):
            return
        self._count_gap(key, frame.seq)
        self.last_wall[key] = time.monotonic()
        image = decode_image(frame, msg.payload)
        if image is None:
            metrics.MESSAGES_REJECTED.labels(self.name, "undecodable_frame").inc()
            self.log.warning("skipped frame %s/%s seq %d: its %s payload does not decode",
                             frame.session, frame.stream, frame.seq, frame.encoding)
            return
        t = frame.t_capture if frame.t_media is None else frame.t_media
        # The frame in grey, made once and only if asked for: the grid search and the follower look at it.
        gray_of = functools.cache(lambda: cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        tiles = self._find_grid(key, image, gray_of, t)
        if tiles:
            # A call's grid: its tiles found every frame (they come and go), faces searched every
            # DETECT_EVERY frames and followed between; ids come from the tiles.
            started = time.perf_counter()
            detections, ids, searched = self._detect_gallery(key, image, gray_of, tiles[:MAX_FACES], t)
            self.tracker.update(key, [], t)  # a face still tentative from before the grid is decided in time
            DETECT_SECONDS.labels(self.name, self.detector.name).observe(time.perf_counter() - started)
            DETECT_RUNS.labels(self.name, "gallery" if searched else "followed").inc()
        else:
            followed, why = self.follower.follow(key, image, gray_of)
            if followed is not None:
                detections = followed
            else:
                detections = self._detect(key, image, t)
                self.follower.detected(key, image, detections, gray_of)
            DETECT_RUNS.labels(self.name, why).inc()
            # The contract caps faces per message; keep the most confident.
            detections = sorted(detections, key=lambda d: -d.confidence)[:MAX_FACES]
            boxes = [d.box for d in detections]
            ids = self.tracker.update(key, boxes, t, lambda due: self.appearance.looks(image, [boxes[i] for i in due]))
        if self.gallery:
            GALLERY_FRAMES.labels(self.name, "gallery" if tiles else "plain").inc()
        FACES_DETECTED.labels(self.name).inc(len(detections))
        crops = [crop_face(image, d.box, self.crop_size, self.settings.crop_margin) for d in detections]
        held = Held(frame, image.shape[1], image.shape[0], list(ids), list(detections), crops)
        forced = self.holdback.forced
        for ready in self.holdback.push(key, held, self._resolutions(key)):
            self._send_faces(ready)
        if self.holdback.forced > forced:
            HELD_TOO_LONG.labels(self.name).inc(self.holdback.forced - forced)
            self.log.warning("%s/%s: %d frames waited for a new face's decision: the oldest went without it",
                             *key, self.holdback.max_waiting)

    def _detect(self, key: tuple[str, str], image: np.ndarray, t: float) -> list[Detection]:
        """The frame's faces: short-range BlazeFace alone while the stream's faces are near (ranges.py),
        else the detector (both models, and slices when the faces are small in a large frame)."""
        started = time.perf_counter()
        slices = not _within(t, self.slices_fruitless_at.get(key), SLICE_RECHECK_SECONDS)
        detections = self.ranges.detect(key, self.detector, image, t, slices)
        DETECT_SECONDS.labels(self.name, self.detector.name).observe(time.perf_counter() - started)
        DETECT_RANGES.labels(self.name, self.ranges.ran).inc()
        if self.ranges.ran != "short":
            self._count_slices(key, t)
        return detections

    def _send_faces(self, held: Held) -> None:
        faces = [{"student": sid, "box": list(d.box), "conf": round(d.confidence, 4)}
                 for sid, d in zip(held.ids, held.detections, strict=True)]
        header = follow_up(held.source, "faces", self.name, width=held.width, height=held.height,
                           crop=self.crop_size, faces=faces, t_media=held.source.t_media)
        # One copy of the crops into the message (a 7x7 gallery's 49 are 7 MB), not two (each crop's bytes, joined).
        self.senders["faces"].send(header, np.stack(held.crops).reshape(-1).data if held.crops else b"")

    def _resolutions(self, key: tuple[str, str]) -> dict[int, int | None]:
        """The tracker's decisions on tentative faces; the set-aside ones counted for the report."""
        resolutions, set_aside = self.tracker.take_resolutions(key)
        for gone in set_aside:
            self._count_set_aside(key[0], gone)
        return resolutions

    def _count_set_aside(self, session: str, gone: SetAside) -> None:
        SET_ASIDE.labels(self.name, gone.reason).inc()
        counts = self.set_aside.setdefault(session, {})
        counts[gone.reason] = counts.get(gone.reason, 0) + 1
        self.log.info("set aside a detection of %s (%s, seen %.1f s)", session, gone.reason, gone.seconds)

    def _save_set_aside(self) -> None:
        """Write the set-aside counts to Redis for the report (before the eos that ends the session)."""
        if not self.set_aside or time.monotonic() < self.set_aside_retry_at:
            return
        for session in list(self.set_aside):
            try:
                self.set_aside_store.add_set_aside(session, self.set_aside[session], self.tracker.min_seconds)
                del self.set_aside[session]
            except redis.RedisError as exc:  # frames go on; the counts wait here and are retried
                SET_ASIDE_STORE_ERRORS.labels(self.name).inc()
                self.set_aside_retry_at = time.monotonic() + NAME_STORE_RETRY_SECONDS
                self.log.warning("set-aside counts of %s not saved to Redis (again in %.0f s): %s", session,
                                 NAME_STORE_RETRY_SECONDS, exc)
                return

    def _count_slices(self, key: tuple[str, str], t: float) -> None:
        """Count a frame searched in slices; slices that added no face are not searched again for
        SLICE_RECHECK_SECONDS (an empty room, one person far from a 1080p camera: the pass suffices)."""
        added = self.detector.added
        if added is None:
            return
        SLICED_FRAMES.labels(self.name).inc()
        if added <= 0:
            self.slices_fruitless_at[key] = t
        else:
            self.slices_fruitless_at.pop(key, None)

    def _find_grid(self, key: tuple[str, str], image: np.ndarray, gray_of: Callable[[], np.ndarray],
                   t: float) -> list[tuple[int, int, int, int]]:
        """The call's tiles in this frame; while a stream shows none (and showed none for
        GRID_RECENT_SECONDS), searched once a GRID_RECHECK_SECONDS."""
        if not self.gallery:
            return []
        recent_grid = _within(t, self.grid_seen_at.get(key), GRID_RECENT_SECONDS)
        if _within(t, self.no_grid_at.get(key), GRID_RECHECK_SECONDS) and not recent_grid:
            return []
        # A stream whose last search found a grid is searched at full size at once: the shrunk look
        # finds the tiles the full-size search finds (tests/facedetect/test_grid.py), so on a call
        # it only cost its time before the full-size search that followed anyway.
        last_found = key in self.grid_seen_at and key not in self.no_grid_at
        tiles = find_tiles(image, last_found, gray=gray_of())
        if tiles:
            self.no_grid_at.pop(key, None)
            self.grid_seen_at[key] = t
        else:
            self.no_grid_at[key] = t
        return tiles

    def _detect_gallery(self, key: tuple[str, str], image: np.ndarray, gray_of: Callable[[], np.ndarray],
                        tiles: list[tuple[int, int, int, int]], t: float) -> tuple[list[Detection], list[int], bool]:
        """One face at most per tile (the participant), with the tile's student id; whether searched.

        The faces are searched for every DETECT_EVERY frames and followed in between, as on a
        plain frame (a face lost, or a change away from the followed people, searches at once):
        the search was 70 % of a 7x7 call's facedetect time, 135 ms of CPU a frame.
        """
        gallery_key = (key[0], key[1] + GALLERY_FOLLOW)
        found, _ = self.follower.follow(gallery_key, image, gray_of)
        searched = found is None
        if found is None:
            found = self._search_gallery(image, tiles)
            self.follower.detected(gallery_key, image, found, gray_of)
        best = _best_per_tile(found, tiles)
        names = self._read_labels(key, image, tiles, t) if self.read_names else None
        ids = self.tiles.update(key, image, tiles, [d is not None for d in best], t, names)
        if self.read_names:
            self._save_names(key)
        kept = [(d, sid) for d, sid in zip(best, ids, strict=True) if d is not None]
        return [d for d, _ in kept], [sid for _, sid in kept], searched

    def _search_gallery(self, image: np.ndarray, tiles: list[tuple[int, int, int, int]]) -> list[Detection]:
        """The faces of a call's frame: the whole frame searched once; only a tile where that
        found no face is searched again at its own scale, where a face too small for the
        detector's 300x300 view of the frame shows."""
        best = _best_per_tile(self.frame_detector.detect(image), tiles)
        for i, (x, y, w, h) in enumerate(tiles):
            if best[i] is None:
                top = max(self.detector.detect(image[y:y + h, x:x + w], slices=False), key=lambda d: d.confidence,
                          default=None)
                if top is not None:
                    TILE_SEARCHES.labels(self.name).inc()
                    best[i] = Detection((top.box[0] + x, top.box[1] + y, top.box[2], top.box[3]), top.confidence)
        return [d for d in best if d is not None]

    def _read_labels(self, key: tuple[str, str], image: np.ndarray, tiles: list[tuple[int, int, int, int]],
                     t: float) -> list[str | None]:
        """Each tile's label read in this frame, None where it is not due (see the module's doc)."""
        assert self.labels is not None
        before = self.label_reads.get(key, [])
        reads: list[str | None] = []
        now: list[tuple[tuple[int, int, int, int], float, str | None]] = []
        for tile in tiles:
            last = next((r for r in before if iou(tile, r[0]) >= 0.9), None)
            due = (last is None or t - last[1] >= NAME_REFRESH_SECONDS or t < last[1]
                   or (last[2] is None and t - last[1] >= NAME_RETRY_SECONDS))
            if not due and last is not None:  # (not due: read before, so `last` is there)
                reads.append(None)
                now.append(last)
                continue
            text = self.labels.read(image, tile)
            NAME_READS.labels(self.name, "name" if text else "none").inc()
            reads.append(text)
            now.append((tile, t, text))
        self.label_reads[key] = now
        return reads

    def _save_names(self, key: tuple[str, str]) -> None:
        names = self.tiles.names(key)
        saved = self.saved_names.setdefault(key, {})
        new = {s: n for s, n in names.items() if saved.get(s) != n}
        if not new or self.tile_names is None or time.monotonic() < self.names_retry_at:
            return
        try:
            self.tile_names.save(key[0], key[1], new)
            saved.update(new)
        except redis.RedisError as exc:  # the ids go on; the names are saved when Redis is back
            NAME_STORE_ERRORS.labels(self.name).inc()
            self.names_retry_at = time.monotonic() + NAME_STORE_RETRY_SECONDS
            self.log.warning("tile names of %s/%s not saved to Redis (again in %.0f s): %s", *key,
                             NAME_STORE_RETRY_SECONDS, exc)

    def _repeats(self, key: tuple[str, str], seq: int) -> bool:
        """A frame this process already took (same stream, seq not past the last): skipped and counted.
        Said when the replay starts; the stream still counts as alive (it is not idle)."""
        last = self.last_seq.get(key)
        if last is None or seq > last:
            return False
        FRAMES_REPEATED.labels(self.name).inc()
        self.last_wall[key] = time.monotonic()
        if self.repeat_told.get(key) != last:
            self.repeat_told[key] = last
            self.log.info("stream %s/%s sends seq %d again (a restarted source replaying): frames up to seq %d "
                          "were taken already and are skipped", *key, seq, last)
        return True

    def _count_gap(self, key: tuple[str, str], seq: int) -> None:
        last = self.last_seq.get(key)
        if last is not None and seq > last + 1:
            metrics.FRAMES_DROPPED.labels(self.name, "gap").inc(seq - last - 1)
        if last is None or seq > last:
            self.last_seq[key] = seq

    def _forget(self, key: tuple[str, str]) -> None:
        # The frames still waiting for a tentative face go (before an eos), decided: the face was
        # too short-lived. Sent once the stream is forgotten: whoever reads them sees it gone.
        self.tracker.finish(key)
        waiting = self.holdback.flush(key, self._resolutions(key))
        self.tracker.reset(key)
        self.tiles.reset(key)
        self.follower.forget(key)
        self.ranges.forget(key)
        self.follower.forget((key[0], key[1] + GALLERY_FOLLOW))
        self.label_reads.pop(key, None)
        self.saved_names.pop(key, None)
        self.last_seq.pop(key, None)
        self.repeat_told.pop(key, None)
        self.last_wall.pop(key, None)
        self.no_grid_at.pop(key, None)
        self.grid_seen_at.pop(key, None)
        self.slices_fruitless_at.pop(key, None)
        for held in waiting:
            self._send_faces(held)

    def tick(self) -> None:
        # A stream that ended without eos (capture killed) must not keep its state forever.
        idle = max(STREAM_IDLE_SECONDS, 2 * float(self.settings.track_max_age))
        now = time.monotonic()
        for key in [k for k, t in self.last_wall.items() if now - t > idle]:
            self.log.info("stream %s/%s idle for %.0f s: forgetting its tracks", *key, idle)
            self._forget(key)
        self._save_set_aside()


def _best_per_tile(detections: list[Detection], tiles: list[tuple[int, int, int, int]]) -> list[Detection | None]:
    """Each tile's most confident detection whose centre lies in it (None: no face there)."""
    best: list[Detection | None] = [None] * len(tiles)
    for det in detections:
        cx, cy = det.box[0] + det.box[2] / 2, det.box[1] + det.box[3] / 2
        for i, (x, y, w, h) in enumerate(tiles):
            if x <= cx < x + w and y <= cy < y + h:
                held = best[i]
                if held is None or det.confidence > held.confidence:
                    best[i] = det
                break
    return best

def _within(t: float, since: float | None, seconds: float) -> bool:
    """Whether frame time t is less than `seconds` after `since` (never, when t went back: a new recording)."""
    return since is not None and 0.0 <= t - since < seconds
