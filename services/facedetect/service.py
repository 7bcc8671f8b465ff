"""Face detection: every face of every frame, a stable student id per face, crops for the model.

One `faces` message per `frame` (an empty face list included), so downstream stages see
every frame. Sequence gaps on the frames link (frames capture dropped, or lost) are counted
as dropped frames; a frame whose pixels do not decode is counted and skipped.

With GALLERY_NAMES=ocr the call tiles' name labels are read now and then (a label changes
rarely): when a tile appears or moves, when its label did not read for NAME_RETRY_SECONDS, and
every NAME_REFRESH_SECONDS. They key students across reflows (gallery.py) and are kept in Redis
on this box for the reports (shared/roster.py TileNames); they are never in a bus message.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import redis
from prometheus_client import Counter, Histogram

from services.facedetect.follow import Follower
from services.facedetect.gallery import TileTracker, find_tiles
from services.facedetect.names import LabelReader, OcrMissing
from services.facedetect.tracker import Tracker, iou
from shared import cpu_budget, metrics
from shared.detectors import Detection, crop_face, make_detector
from shared.messages import MAX_FACES, Eos, Frame, Message, follow_up
from shared.roster import TileNames
from shared.service import Service

FACES_DETECTED = Counter("engagement_faces_detected_total", "Faces found in frames", ["service"])
DETECT_RUNS = Counter("engagement_detect_runs_total",
                      "Frames the face detector ran on, by why (first, due, lost, change, gallery); "
                      "'followed' counts frames whose faces were followed instead", ["service", "reason"])
DETECT_SECONDS = Histogram("engagement_detect_seconds", "Time the face detector takes for one frame",
                           ["service", "detector"], buckets=metrics.LATENCY_BUCKETS)
TILE_SEARCHES = Counter("engagement_gallery_tile_faces_total",
                        "Faces found only by searching a gallery tile at its own scale", ["service"])
# Wall-clock seconds after which a silent stream's tracks and sequence state are dropped.
STREAM_IDLE_SECONDS = 60.0
NAME_READS = Counter("engagement_gallery_name_reads_total",
                     "Tile name labels read by OCR, by outcome (name, none: nothing that reads as a name)",
                     ["service", "outcome"])
NAME_STORE_ERRORS = Counter("engagement_gallery_name_store_errors_total",
                            "Tile names that could not be saved to Redis (the ids are unaffected)", ["service"])
NAME_RETRY_SECONDS = 2.0
NAME_REFRESH_SECONDS = 30.0
NAME_STORE_RETRY_SECONDS = 10.0
# A stream without a grid is looked at again for one this often, not every frame: the grid
# search cost more than BlazeFace on a camera's frames (a third of facedetect's time at 78
# frames/s, 18 ms a 1920x1080 frame); a call's grid that appears is found within this.
GRID_RECHECK_SECONDS = 1.0
# ... unless it showed one this recently: a reflow (someone joins or leaves) can hide the grid
# for a frame, and the frames after it must not lose their tile ids for a second.
GRID_RECENT_SECONDS = 30.0
GALLERY_FRAMES = Counter("engagement_gallery_frames_total",
                         "Frames by whether a participant grid was found (gallery) or not (plain detection)",
                         ["service", "mode"])


def decode_image(frame: Frame, payload: bytes) -> np.ndarray | None:
    """The frame's pixels as a BGR array, or None when they do not decode."""
    if frame.encoding == "bgr":
        return np.frombuffer(payload, dtype=np.uint8).reshape(frame.height, frame.width, 3)  # size checked
    image = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3:
        return None
    return image


class FaceDetectService(Service):
    name = "facedetect"
    inputs = {"frames": "frames_in"}
    outputs = {"faces": "faces_out"}
    expect = {"frames": ("frame", "eos")}

    def setup(self) -> None:
        s = self.settings
        self.detector = make_detector(s.detector, s.confidence, Path(s.models_dir), cpu_budget.litert_threads(1))
        # A call's whole frame (25 faces of ~150 px at 1920x1080): res10 finds them all in one
        # pass where BlazeFace's 128 px view finds a few and leaves 20 tiles to search one by one
        # (2 FPS against 1.4 in engagement bench-gallery). A detector named explicitly is kept.
        self.frame_detector = (make_detector("dnn", s.confidence, Path(s.models_dir))
                               if s.detector == "auto" and s.gallery == "auto" else self.detector)
        self.follower = Follower(s.detect_every)
        self.tracker = Tracker(s.track_iou, s.track_max_age)
        self.tiles = TileTracker(s.track_max_age)
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
        self.last_wall: dict[tuple[str, str], float] = {}
        self.no_grid_at: dict[tuple[str, str], float] = {}  # when a stream's last grid search found none
        self.grid_seen_at: dict[tuple[str, str], float] = {}  # when it last found one
        self.log.info("detector %s (confidence %.2f, every %d frames), crops %dpx", self.detector.name,
                      s.confidence, self.follower.every, self.crop_size)

    def handle(self, link: str, msg: Message) -> None:
        frame = msg.header
        key = (frame.session, frame.stream)
        if isinstance(frame, Eos):
            self._forget(key)
            self.senders["faces"].send(follow_up(msg, "eos", self.name, reason=frame.reason, source=frame.source))
            return
        assert isinstance(frame, Frame)  # the only other kind this link takes (decode checked)
        self._count_gap(key, frame.seq)
        self.last_wall[key] = time.monotonic()
        image = decode_image(frame, msg.payload)
        if image is None:
            metrics.MESSAGES_REJECTED.labels(self.name, "undecodable_frame").inc()
            self.log.warning("skipped frame %s/%s seq %d: its %s payload does not decode",
                             frame.session, frame.stream, frame.seq, frame.encoding)
            return
        t = frame.t_capture if frame.t_media is None else frame.t_media
        tiles = self._find_grid(key, image)
        if tiles:
            # A call's grid: every frame is searched (tiles come and go); ids come from the tiles.
            started = time.perf_counter()
            detections, ids = self._detect_gallery(key, image, tiles[:MAX_FACES], t)
            DETECT_SECONDS.labels(self.name, self.detector.name).observe(time.perf_counter() - started)
            DETECT_RUNS.labels(self.name, "gallery").inc()
        else:
            detections, why = self.follower.follow(key, image)
            if detections is None:
                started = time.perf_counter()
                detections = self.detector.detect(image)
                DETECT_SECONDS.labels(self.name, self.detector.name).observe(time.perf_counter() - started)
                self.follower.detected(key, image, detections)
            DETECT_RUNS.labels(self.name, why).inc()
            # The contract caps faces per message; keep the most confident.
            detections = sorted(detections, key=lambda d: -d.confidence)[:MAX_FACES]
            ids = self.tracker.update(key, [d.box for d in detections], t)
        if self.gallery:
            GALLERY_FRAMES.labels(self.name, "gallery" if tiles else "plain").inc()
        FACES_DETECTED.labels(self.name).inc(len(detections))
        faces = [{"student": sid, "box": list(d.box), "conf": round(d.confidence, 4)}
                 for sid, d in zip(ids, detections, strict=True)]
        crops = [crop_face(image, d.box, self.crop_size, self.settings.crop_margin) for d in detections]
        header = follow_up(msg, "faces", self.name, width=image.shape[1], height=image.shape[0],
                           crop=self.crop_size, faces=faces, t_media=frame.t_media)
        self.senders["faces"].send(header, b"".join(c.tobytes() for c in crops))

    def _find_grid(self, key: tuple[str, str], image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """The call's tiles in this frame; while a stream shows none (and showed none for
        GRID_RECENT_SECONDS), searched once a GRID_RECHECK_SECONDS."""
        if not self.gallery:
            return []
        now = time.monotonic()
        last_miss = self.no_grid_at.get(key)
        recent_grid = now - self.grid_seen_at.get(key, -1e9) < GRID_RECENT_SECONDS
        if last_miss is not None and now - last_miss < GRID_RECHECK_SECONDS and not recent_grid:
            return []
        tiles = find_tiles(image)
        if tiles:
            self.no_grid_at.pop(key, None)
            self.grid_seen_at[key] = now
        else:
            self.no_grid_at[key] = now
        return tiles

    def _detect_gallery(self, key: tuple[str, str], image: np.ndarray, tiles: list[tuple[int, int, int, int]],
                        t: float) -> tuple[list[Detection], list[int]]:
        """One face at most per tile (the participant), with the tile's student id.

        The whole frame is searched once; only a tile where that found no face is searched again
        at its own scale, where a face too small for the detector's 300x300 view of the frame shows.
        """
        best: list[Detection | None] = [None] * len(tiles)
        for det in self.frame_detector.detect(image):
            cx, cy = det.box[0] + det.box[2] / 2, det.box[1] + det.box[3] / 2
            for i, (x, y, w, h) in enumerate(tiles):
                if x <= cx < x + w and y <= cy < y + h:
                    if best[i] is None or det.confidence > best[i].confidence:
                        best[i] = det
                    break
        for i, (x, y, w, h) in enumerate(tiles):
            if best[i] is None:
                top = max(self.detector.detect(image[y:y + h, x:x + w]), key=lambda d: d.confidence, default=None)
                if top is not None:
                    TILE_SEARCHES.labels(self.name).inc()
                    best[i] = Detection((top.box[0] + x, top.box[1] + y, top.box[2], top.box[3]), top.confidence)
        names = self._read_labels(key, image, tiles, t) if self.read_names else None
        ids = self.tiles.update(key, image, tiles, [d is not None for d in best], t, names)
        if self.read_names:
            self._save_names(key)
        kept = [(d, sid) for d, sid in zip(best, ids, strict=True) if d is not None]
        return [d for d, _ in kept], [sid for _, sid in kept]

    def _read_labels(self, key: tuple[str, str], image: np.ndarray, tiles: list[tuple[int, int, int, int]],
                     t: float) -> list[str | None]:
        """Each tile's label read in this frame, None where it is not due (see the module's doc)."""
        assert self.labels is not None
        before = self.label_reads.get(key, [])
        reads: list[str | None] = []
        now = []
        for tile in tiles:
            last = next((r for r in before if iou(tile, r[0]) >= 0.9), None)
            due = (last is None or t - last[1] >= NAME_REFRESH_SECONDS or t < last[1]
                   or (last[2] is None and t - last[1] >= NAME_RETRY_SECONDS))
            if not due:
                reads.append(None)
                now.append(last)  # type: ignore[arg-type]
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

    def _count_gap(self, key: tuple[str, str], seq: int) -> None:
        last = self.last_seq.get(key)
        if last is not None and seq > last + 1:
            metrics.FRAMES_DROPPED.labels(self.name, "gap").inc(seq - last - 1)
        if last is None or seq > last:
            self.last_seq[key] = seq

    def _forget(self, key: tuple[str, str]) -> None:
        self.tracker.reset(key)
        self.tiles.reset(key)
        self.follower.forget(key)
        self.label_reads.pop(key, None)
        self.saved_names.pop(key, None)
        self.last_seq.pop(key, None)
        self.last_wall.pop(key, None)
        self.no_grid_at.pop(key, None)
        self.grid_seen_at.pop(key, None)

    def tick(self) -> None:
        # A stream that ended without eos (capture killed) must not keep its state forever.
        idle = max(STREAM_IDLE_SECONDS, 2 * float(self.settings.track_max_age))
        now = time.monotonic()
        for key in [k for k, t in self.last_wall.items() if now - t > idle]:
            self.log.info("stream %s/%s idle for %.0f s: forgetting its tracks", *key, idle)
            self._forget(key)
