"""The `inference` service: `batch` in, `predictions` out, one message per frame (see flow). A frame model's
class may run no sequencer: facedetect's `faces` come in, each its frame's batch (shared/bus/frame_batch.py).

MODEL=baseline runs the face-mesh attention baseline (no TensorFlow); MODEL=<bundle dir>
loads a trained bundle with ENGINE. All students of a frame go through the model in one call,
and so do the frames waiting together (several cameras' streams: batch messages read at once, up
to MAX_BATCH_FACES faces, one model call, the predictions split back per message; each
student's state stays per (session, stream, student)).
A bundle that does not match its card, or an affect model under EU_AI_ACT_MODE, is reported in
one log line and the labelled attention baseline runs instead; a bundle that no engine of this
machine can run (no TensorFlow, no onnxruntime, no checked model.onnx/.tflite) stops the service
at start-up with one line and exit status 3 (EXIT_GAVE_UP: a restart cannot mend it), and so
does a bundle whose card says it was trained on other face crops than facedetect's DETECTOR,
CROP_MARGIN and CROP_SIZE cut, unless ALLOW_CROP_MISMATCH=1 (services/inference/crop_check.py).

The baseline measures head turns from each student's neutral pose (NEUTRAL_POSE), which a
teacher's "attentive" mark sets: the marks of the running sessions are followed in Redis
(REDIS_URL, services/inference/mark_feedback.py); BASELINE_THRESHOLDS loads fitted thresholds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from services.inference.baseline.neutral import NeutralPose
from services.inference.bundle import BundleError, NoEngineError
from services.inference.crop_check import edge_crop, judge
from services.inference.mark_feedback import MarkFollower
from services.inference.onnx_engine import TrtOptions
from services.inference.predictor import Predictor
from shared.bus.acks import ReliableLink
from shared.bus.backoff import LogThrottle
from shared.bus.frame_batch import frame_batch
from shared.bus.messages import Ack, Batch, Eos, Face, Message, Payload, follow_up
from shared.bus.metrics import LATENCY_BUCKETS
from shared.data.marks import MarkStore
from shared.data.model_card import CardError, ModelCard
from shared.data.model_info import ModelInfo
from shared.ops.assets import MissingAsset
from shared.ops.card_info import BASELINE, resolve_bundle
from shared.ops.service import EXIT_GAVE_UP, Service
from shared.ops.settings import InferenceSettings
from shared.vision.baseline_card import baseline_card

INFERENCE_SECONDS = Histogram("engagement_inference_seconds", "Time of one model call (the faces of every "
                              "frame taken together)", buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("engagement_inference_batch_size", "Faces per model call (every waiting frame's, of any "
                       "stream)", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
MESSAGES_PER_CALL = Histogram("engagement_inference_messages_per_call", "Batch messages (frames) per model call",
                              buckets=(1, 2, 3, 4, 6, 8, 12, 16))
STREAMS_PER_CALL = Histogram("engagement_inference_streams_per_call", "Streams (cameras) whose faces shared "
                             "a model call", buckets=(1, 2, 3, 4, 6, 8))
PREDICTIONS = Counter("engagement_predictions_total", "Predictions published, by level", ["level"])
FACES = Counter("engagement_inference_faces_total", "Faces run through the model")
SKIPPED = Counter("engagement_inference_skipped_batches_total", "Batches not run through the model",
                  ["reason"])
STARTUP_FAILURES = Counter("engagement_inference_model_errors_total",
                           "Models refused at start-up (bundle does not match its card, affect model "
                           "under EU_AI_ACT_MODE, missing weights)")
ENGINE_INFO = Gauge("engagement_inference_engine_info", "The engine in use (1) and where it computes",
                    ["model", "engine", "device"])
NEUTRAL_ANCHORS = Counter("engagement_neutral_pose_anchors_total",
                          "Students' neutral poses set by a teacher's mark of level 0")
STATE_IDLE_SECONDS = 120.0  # a student's smoothing window is forgotten after this long unseen


@runtime_checkable
class Anchored(Protocol):
    """A predictor that keeps each student's neutral pose (the baseline): a teacher's mark sets it."""

    def anchor(self, session: str, student: str, yaw: float, pitch: float, stream: str = "") -> int: ...
    def end_session(self, session: str) -> None: ...


def load_model(model: str, engine: str, eu_ai_act_mode: bool, models_dir: str | None = None,
               gaze: bool = False, smoothing_seconds: float = 1.0, trt: TrtOptions | None = None,
               thresholds_card: str = "", neutral: NeutralPose | None = None, probe_faces: int = 8) -> Predictor:
    """The predictor for a MODEL setting: the baseline, or a bundle (TensorFlow imported here only).

    Baseline only: `thresholds_card` (BASELINE_THRESHOLDS; CardError if unusable) and `neutral`;
    bundles only: `probe_faces` (ENGINE_PROBE_FACES, the batch ENGINE=auto times the engines at).
    """
    if model == BASELINE:
        from services.inference.baseline import BaselinePredictor  # noqa: PLC0415

        return BaselinePredictor(Path(models_dir) if models_dir else None, gaze=gaze,
                                 smoothing_seconds=smoothing_seconds, thresholds_card=thresholds_card,
                                 neutral=neutral)
    from services.inference.bundle import load_predictor  # noqa: PLC0415

    return load_predictor(resolve_bundle(model, models_dir), engine, eu_ai_act_mode, trt, probe_faces)


class InferenceService(Service[InferenceSettings]):
    name = "inference"
    # With ACKS_IN set, predictions and eos are kept until the aggregator acknowledges their
    # Redis write, and resent if it lost them (SIGKILL with a full queue): shared/bus/acks.py.
    reliable: ReliableLink | None = None

    def expected_kinds(self, link: str) -> tuple[str, ...] | None:
        # A frame model's class may run no sequencer: the launcher sends facedetect's faces here, each taken as its
        # frame's batch (shared/bus/frame_batch.py).
        kinds = super().expected_kinds(link)
        return (*kinds, "faces") if link == "batches" and kinds else kinds

    def open_sockets(self) -> None:
        super().open_sockets()
        if "acks" in self.receivers:
            s = self.settings
            self.reliable = ReliableLink(self.name, self.senders["predictions"], self.receivers["acks"],
                                         s.ack_window, s.ack_timeout)

    def setup(self) -> None:
        self._check_crop()
        try:
            self._load()
        except MissingAsset as exc:
            self.log.error("cannot start: %s", exc)  # one line: the message names the command to run
            raise SystemExit(EXIT_GAVE_UP) from None
        except NoEngineError as exc:
            # A trained model was asked for: running the baseline in its place would pass off
            # attention estimates as the model's. Stop, say why in one line.
            STARTUP_FAILURES.inc()
            self.log.error("cannot start: MODEL=%s ENGINE=%s: %s", self.settings.model, self.settings.engine, exc)
            raise SystemExit(EXIT_GAVE_UP) from None

    def _check_crop(self) -> None:
        """Refuse a bundle trained on other crops than facedetect cuts (before its slow load), unless allowed."""
        s = self.settings
        try:
            card = (ModelCard.load(resolve_bundle(s.model, s.models_dir)) if s.model != BASELINE
                    else baseline_card())
        except CardError:
            return  # _load says why in its own line
        verdict = judge(card, edge_crop(s), bool(s.allow_crop_mismatch))
        if verdict.refuse:
            STARTUP_FAILURES.inc()
            self.log.error("cannot start: %s", verdict.line)
            raise SystemExit(EXIT_GAVE_UP)
        self.log.info("%s", verdict.line)

    def _load(self) -> None:
        s = self.settings
        seconds = float(s.smoothing_seconds)
        if s.smoothing_window and s.fps > 0:  # the old setting, in frames: still read
            seconds = s.smoothing_window / float(s.fps)
            self.log.warning("SMOOTHING_WINDOW=%d frames is deprecated: read as SMOOTHING_SECONDS=%.2f at %g FPS",
                             s.smoothing_window, seconds, s.fps)
        options: dict[str, Any] = {"models_dir": s.models_dir, "gaze": bool(s.gaze), "smoothing_seconds": seconds}
        try:
            self.predictor = (self._load_baseline(options) if s.model == BASELINE
                              else load_model(s.model, s.engine, bool(s.eu_ai_act_mode), **options,
                                              trt=TrtOptions(s.trt_cache_dir, bool(s.trt_fp16)),
                                              probe_faces=int(s.engine_probe_faces)))
        except NoEngineError:
            raise
        except (BundleError, CardError) as exc:
            # A bad or refused bundle must not take the pipeline down, and a restart cannot
            # mend it: say why once, count it, and run the attention baseline (labelled as
            # such in every prediction) so the session still gets a report.
            STARTUP_FAILURES.inc()
            self.log.error("cannot load MODEL=%s: %s; running the attention baseline instead", s.model, exc)
            self.predictor = self._load_baseline(options)
        card = self.predictor.card
        self.sequence_length = card.sequence_length
        device = str(getattr(self.predictor, "device", "cpu"))
        self.model_info = ModelInfo(name=card.name, kind=card.kind, baseline=bool(card.baseline),
                                    affect=bool(card.affect), labels=list(card.labels),
                                    engine=self.predictor.engine, device=device)
        ENGINE_INFO.labels(card.name, self.predictor.engine, device).set(1)
        self._skip_log = LogThrottle(1.0)  # one line a second at most, however many arrive
        self.log.info("model %s (kind %s, sequence length %d, engine %s on %s)", card.name, card.kind,
                      self.sequence_length, self.predictor.engine, device)

    def _load_baseline(self, options: dict[str, Any]) -> Predictor:
        """The baseline with its neutral poses and BASELINE_THRESHOLDS (the documented ones if that fails)."""
        s = self.settings
        self.mark_follower: MarkFollower | None = None
        neutral = NeutralPose(s.neutral_learn_seconds) if s.neutral_pose else None
        if neutral is not None and s.redis_url:
            self.mark_follower = MarkFollower(MarkStore.from_url(s.redis_url, prefix=s.redis_prefix, timeout=5.0))
        try:
            predictor = load_model(BASELINE, s.engine, bool(s.eu_ai_act_mode), **options,
                                   thresholds_card=s.baseline_thresholds, neutral=neutral)
        except CardError as exc:
            STARTUP_FAILURES.inc()
            self.log.error("cannot load BASELINE_THRESHOLDS=%s: %s; the documented thresholds are used",
                           s.baseline_thresholds, exc)
            predictor = load_model(BASELINE, s.engine, bool(s.eu_ai_act_mode), **options, neutral=neutral)
        self.log.info("baseline thresholds: %s; neutral pose per student: %s",
                      s.baseline_thresholds or "documented defaults",
                      f"learned over {s.neutral_learn_seconds:g} s, re-anchored by the teacher's marks"
                      if neutral is not None else "off")
        pool = getattr(predictor, "meshes", None)
        if pool is not None:
            self.log.info("face mesh: %d interpreter(s) of one thread (LITERT_THREADS); a frame of %d faces or "
                          "more is split over them", pool.workers, pool.min_faces)
        return predictor

    def handle(self, link: str, msg: Message) -> None:
        if link == "acks":
            if self.reliable is not None and isinstance(msg.header, Ack):  # decode checked: the link expects acks
                self.reliable.acked(msg.header)
            self._drain_acks()
            return
        self._drain_acks()  # before a model call: what is acknowledged must not be resent during it
        msg = frame_batch(msg)
        group = [msg, *self._waiting(msg)]
        batches = [(m.header, m.payload) for m in group if isinstance(m.header, Batch)]  # decode checked: or eos
        for (batch, _), predictions in zip(batches, self._predict_all(batches), strict=True):
            header = follow_up(batch, "predictions", stage=self.name, model=self.model_info,
                               predictions=predictions, faces=batch.faces, t_media=batch.t_media)
            if self.reliable is not None:
                self.reliable.send(header)
            else:
                self.senders["predictions"].send(header)
        if isinstance(group[-1].header, Eos):  # an eos ends a group: after its stream's last frames
            self._end_session(group[-1].header)

    def _drain_acks(self) -> None:
        """Take every acknowledgement already waiting. The loop reads one message per link a
        turn, and one model call answers several frames: read one at a time, acks fell behind
        and their messages were resent (the 600 s soak: 38907 updates for 6000 frames)."""
        if self.reliable is None or "acks" not in self.receivers:
            return
        receiver = self.receivers["acks"]
        while receiver.waiting():
            ack = receiver.read()
            if ack is not None and isinstance(ack.header, Ack):
                self.reliable.acked(ack.header)

    def _waiting(self, first: Message) -> list[Message]:
        """The batch messages already waiting behind `first`, up to MAX_BATCH_FACES faces in all,
        and up to an eos (taken last, so it follows its stream's frames). Never waits for more."""
        if not isinstance(first.header, Batch):
            return []
        receiver = self.receivers["batches"]
        faces, taken = len(first.header.students), []
        while faces < self.settings.max_batch_faces and receiver.waiting():
            msg = receiver.read()
            if msg is None:  # malformed: counted and logged by the receiver
                continue
            msg = frame_batch(msg)
            taken.append(msg)
            if not isinstance(msg.header, Batch):
                break
            faces += len(msg.header.students)
        return taken

    def tick(self) -> None:
        # Students who left without an eos (the sequencer evicted them) must not pile up.
        self.predictor.evict_idle(STATE_IDLE_SECONDS)
        self._apply_marks()
        if self.reliable is not None:
            self.reliable.tick()

    def on_stop(self) -> None:
        if self.reliable is not None:
            self.reliable.close()
        follower = getattr(self, "mark_follower", None)
        if follower is not None:
            follower.close()

    def _apply_marks(self) -> None:
        """A teacher's "attentive" (level 0) mark sets that student's neutral pose to the marked one."""
        follower = getattr(self, "mark_follower", None)
        if follower is None:
            return
        for mark in follower.poll():
            yaw, pitch = mark.signals.get("yaw"), mark.signals.get("pitch")
            if mark.level_given != 0 or yaw is None or pitch is None:
                continue
            stream = getattr(mark, "stream", "")  # (stream, student) is the student when a class has several
            if isinstance(self.predictor, Anchored):  # (the follower runs with the baseline only)
                self.predictor.anchor(mark.session, mark.student, yaw, pitch, stream)
            NEUTRAL_ANCHORS.inc()
            self.log.info("student %s%s of %s: neutral pose set by the teacher's mark to yaw %.1f, pitch %.1f",
                          mark.student, f" of stream {stream}" if stream else "", mark.session, yaw, pitch)

    def _end_session(self, end: Eos) -> None:
        dropped = self.predictor.end_stream(end.session, end.stream)
        follower = getattr(self, "mark_follower", None)
        if follower is not None:
            follower.forget(end.session)
            if isinstance(self.predictor, Anchored):  # (the follower runs with the baseline only)
                self.predictor.end_session(end.session)
        if dropped:
            self.log.info("eos for %s/%s: dropped %d students' state", end.session, end.stream, dropped)
        eos = follow_up(end, "eos", stage=self.name, reason=end.reason, source=end.source)
        if self.reliable is not None:
            self.reliable.end(eos)  # after the session's predictions are acknowledged
        else:
            self.senders["predictions"].send(eos)

    def _skip(self, reason: str, detail: str) -> None:
        SKIPPED.labels(reason).inc()
        if self._skip_log.ready():
            self.log.warning("skipped a batch: %s", detail)

    def _crops(self, batch: Batch, payload: Payload) -> np.ndarray | None:
        """The batch's crops (students, length, crop, crop, 3), or None: nothing to run. A read-only
        view of the received message, not a copy."""
        if not batch.students:
            return None
        if not self.predictor.accepts(batch.length):
            self._skip("length_mismatch", f"length {batch.length} != the model's sequence length "
                                          f"{self.sequence_length} (set SEQUENCE_LENGTH={self.sequence_length})")
            return None
        return np.frombuffer(payload, np.uint8).reshape(len(batch.students), batch.length, batch.crop,
                                                        batch.crop, 3)

    def _predict_all(self, messages: list[tuple[Batch, Payload]]) -> list[list[dict[str, Any]]]:
        """Each batch message's predictions, its faces run with the others' in as few model calls
        as MAX_BATCH_FACES and the crops' shapes allow."""
        out: list[list[dict[str, Any]]] = [[] for _ in messages]
        calls: list[list[tuple[int, np.ndarray]]] = []  # (message index, its crops) per model call
        for i, (batch, payload) in enumerate(messages):
            crops = self._crops(batch, payload)
            if crops is None:
                continue
            last = calls[-1] if calls else None
            if (last is None or last[0][1].shape[1:] != crops.shape[1:]
                    or sum(len(c) for _, c in last) + len(crops) > self.settings.max_batch_faces):
                calls.append([(i, crops)])
            else:
                last.append((i, crops))
        for call in calls:
            for i, entries in zip([i for i, _ in call], self._call([(messages[i][0], c) for i, c in call]),
                                  strict=True):
                out[i] = entries
        return out

    def _call(self, parts: list[tuple[Batch, np.ndarray]]) -> list[list[dict[str, Any]]]:
        """One model call for the students of several batch messages; their entries split back per message."""
        if self.settings.slowdown > 0:
            time.sleep(self.settings.slowdown)  # fault injection: a slow consumer
        keys, times = [], []
        for batch, _ in parts:
            # The student is (session, stream, student): ids start at 1 in every stream.
            keys += [(batch.session, batch.stream, student["student"]) for student in batch.students]
            # Seconds into the video (media time for files): the baseline smooths over a time window
            # and learns each student's neutral pose over one; each frame keeps its own.
            t = batch.t_media if batch.t_media is not None else batch.t_capture
            times += [t] * len(batch.students)
            follower = getattr(self, "mark_follower", None)
            if follower is not None:
                follower.watch(batch.session)
        crops = parts[0][1] if len(parts) == 1 else np.concatenate([c for _, c in parts])
        BATCH_SIZE.observe(len(keys))
        MESSAGES_PER_CALL.observe(len(parts))
        STREAMS_PER_CALL.observe(len({(batch.session, batch.stream) for batch, _ in parts}))
        FACES.inc(len(keys))
        started = time.perf_counter()
        assessed = self.predictor.predict_students(keys, crops, times if len(parts) > 1 else times[0])
        INFERENCE_SECONDS.observe(time.perf_counter() - started)
        out, start = [], 0
        for batch, _ in parts:
            entries = []
            for student, entry in zip(batch.students, assessed[start:start + len(batch.students)], strict=True):
                entries.append({**_identity(student), **entry})
                PREDICTIONS.labels(str(entry["level"])).inc()
            out.append(entries)
            start += len(batch.students)
        return out


def _identity(student: Face) -> dict[str, Any]:
    return {"student": student["student"], "box": list(student["box"]), "conf": float(student.get("conf", 0.0))}
