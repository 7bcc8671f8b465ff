"""The `inference` service: `batch` in, `predictions` out, one message per frame (see flow).

MODEL=baseline runs the face-mesh attention baseline (no TensorFlow); MODEL=<bundle dir>
loads a Keras bundle with ENGINE. All students of a frame go through the model in one call.
A bundle that does not match its card, or an affect model under EU_AI_ACT_MODE, stops the
service at start-up with one clear log line and exit status 2.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from prometheus_client import Counter, Histogram

from services.inference.baseline.neutral import NeutralPose
from services.inference.bundle import BundleError
from services.inference.mark_feedback import MarkFollower
from shared.acks import ReliableLink
from shared.assets import MissingAsset
from shared.card_info import BASELINE, resolve_bundle
from shared.marks import MarkStore
from shared.messages import Message, follow_up
from shared.metrics import LATENCY_BUCKETS
from shared.model_card import CardError
from shared.service import EXIT_GAVE_UP, Service

INFERENCE_SECONDS = Histogram("engagement_inference_seconds", "Time of one model call (all faces of a frame)",
                              buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram("engagement_inference_batch_size", "Students per model call",
                       buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64))
PREDICTIONS = Counter("engagement_predictions_total", "Predictions published, by level", ["level"])
FACES = Counter("engagement_inference_faces_total", "Faces run through the model")
SKIPPED = Counter("engagement_inference_skipped_batches_total", "Batches not run through the model",
                  ["reason"])
STARTUP_FAILURES = Counter("engagement_inference_model_errors_total",
                           "Models refused at start-up (bundle does not match its card, affect model "
                           "under EU_AI_ACT_MODE, missing weights)")
NEUTRAL_ANCHORS = Counter("engagement_neutral_pose_anchors_total",
                          "Students' neutral poses set by a teacher's mark of level 0")
STATE_IDLE_SECONDS = 120.0  # a student's smoothing window is forgotten after this long unseen


def load_model(model: str, engine: str, eu_ai_act_mode: bool, models_dir: str | None = None,
               gaze: bool = False, thresholds_card: str = "") -> Any:
    """The predictor for a MODEL setting: the baseline, or a bundle (TensorFlow imported here only).

    `thresholds_card`: the baseline's fitted thresholds (BASELINE_THRESHOLDS); CardError if unusable.
    """
    if model == BASELINE:
        from services.inference.baseline import BaselinePredictor  # noqa: PLC0415

        return BaselinePredictor(Path(models_dir) if models_dir else None, gaze=gaze, thresholds_card=thresholds_card)
    from services.inference.bundle import load_predictor  # noqa: PLC0415

    return load_predictor(resolve_bundle(model, models_dir), engine, eu_ai_act_mode)


class InferenceService(Service):
    name = "inference"
    inputs: ClassVar[dict[str, str]] = {"batches": "batches_in", "acks": "acks_in"}
    outputs: ClassVar[dict[str, str]] = {"predictions": "predictions_out"}
    expect: ClassVar[dict[str, tuple[str, ...]]] = {"batches": ("batch", "eos"), "acks": ("ack",)}
    # With ACKS_IN set, predictions and eos are kept until the aggregator acknowledges their
    # Redis write, and resent if it lost them (SIGKILL with a full queue): shared/acks.py.
    reliable: ReliableLink | None = None

    def open_sockets(self) -> None:
        super().open_sockets()
        if "acks" in self.receivers:
            s = self.settings
            self.reliable = ReliableLink(self.name, self.senders["predictions"], self.receivers["acks"].socket,
                                         s.ack_window, s.ack_timeout)

    def setup(self) -> None:
        try:
            self._load()
        except MissingAsset as exc:
            self.log.error("cannot start: %s", exc)  # one line: the message names the command to run
            raise SystemExit(EXIT_GAVE_UP) from None

    def _load(self) -> None:
        s = self.settings
        try:
            if s.model == BASELINE:
                self.predictor = self._load_baseline()
            else:
                self.predictor = load_model(s.model, s.engine, bool(s.eu_ai_act_mode), s.models_dir, bool(s.gaze))
        except (BundleError, CardError) as exc:
            # A bad or refused bundle must not take the pipeline down, and a restart cannot
            # mend it: say why once, count it, and run the attention baseline (labelled as
            # such in every prediction) so the session still gets a report.
            STARTUP_FAILURES.inc()
            self.log.error("cannot load MODEL=%s: %s; running the attention baseline instead", s.model, exc)
            self.predictor = self._load_baseline()
        card = self.predictor.card
        self.baseline = bool(card.baseline)
        self.sequence_length = card.sequence_length
        self.model_info = {"name": card.name, "kind": card.kind, "baseline": self.baseline,
                           "affect": bool(card.affect), "labels": list(card.labels),
                           "engine": self.predictor.engine}
        if self.baseline:
            from services.inference.baseline.smoothing import Smoother  # noqa: PLC0415

            self.smoother = Smoother(s.smoothing_window)
            self._setup_neutral_pose()
        self._last_skip_log = 0.0
        self.log.info("model %s (kind %s, sequence length %d, engine %s)", card.name, card.kind,
                      self.sequence_length, self.predictor.engine)

    def _load_baseline(self) -> Any:
        """The baseline, with BASELINE_THRESHOLDS when set and usable (else the defaults, said once)."""
        s = self.settings
        try:
            return load_model(BASELINE, s.engine, bool(s.eu_ai_act_mode), s.models_dir, bool(s.gaze),
                              s.baseline_thresholds)
        except CardError as exc:
            STARTUP_FAILURES.inc()
            self.log.error("cannot load BASELINE_THRESHOLDS=%s: %s; the documented thresholds are used",
                           s.baseline_thresholds, exc)
            return load_model(BASELINE, s.engine, bool(s.eu_ai_act_mode), s.models_dir, bool(s.gaze))

    def _setup_neutral_pose(self) -> None:
        s = self.settings
        self.neutral = NeutralPose(s.neutral_learn_seconds) if s.neutral_pose else None
        self.mark_follower = None
        self.anchors: dict[tuple[str, str], tuple[float, float]] = {}  # (session, student) -> yaw, pitch
        if self.neutral is not None and s.redis_url:
            self.mark_follower = MarkFollower(MarkStore.from_url(s.redis_url, prefix=s.redis_prefix, timeout=5.0))
        self.log.info("baseline thresholds: %s; neutral pose per student: %s",
                      s.baseline_thresholds or "documented defaults",
                      f"learned over {s.neutral_learn_seconds:g} s, re-anchored by the teacher's marks"
                      if self.neutral is not None else "off")

    def handle(self, link: str, msg: Message) -> None:
        if link == "acks":
            if self.reliable is not None:
                self.reliable.acked(msg.header)
            return
        if msg.kind == "eos":
            self._end_session(msg)
            return
        predictions = self._predict(msg)
        header = follow_up(msg, "predictions", stage=self.name, model=self.model_info,
                           predictions=predictions, faces=msg.get("faces", []), t_media=msg.get("t_media"))
        if self.reliable is not None:
            self.reliable.send(header)
        else:
            self.senders["predictions"].send(header)

    def tick(self) -> None:
        # Students who left without an eos (the sequencer evicted them) must not pile up.
        if self.baseline:
            self.smoother.evict_idle(STATE_IDLE_SECONDS)
            if self.neutral is not None:
                self.neutral.evict_idle(STATE_IDLE_SECONDS)
                self._apply_marks()
        if self.reliable is not None:
            self.reliable.tick()

    def on_stop(self) -> None:
        if self.reliable is not None:
            self.reliable.close()
        if getattr(self, "mark_follower", None) is not None:
            self.mark_follower.close()

    def _end_session(self, msg: Message) -> None:
        if self.baseline:
            session, stream = msg["session"], msg["stream"]
            dropped = self.smoother.drop(lambda key: key[:2] == (session, stream))
            if self.neutral is not None:
                self.neutral.drop(lambda key: key[:2] == (session, stream))
            if self.mark_follower is not None:
                self.mark_follower.forget(session)
                self.anchors = {k: v for k, v in self.anchors.items() if k[0] != session}
            self.log.info("eos for %s/%s: dropped %d students' smoothing state", session, stream, dropped)
        eos = follow_up(msg, "eos", stage=self.name, reason=msg["reason"])
        if self.reliable is not None:
            self.reliable.end(eos)  # after the session's predictions are acknowledged
        else:
            self.senders["predictions"].send(eos)

    def _skip(self, reason: str, detail: str) -> None:
        SKIPPED.labels(reason).inc()
        now = time.monotonic()
        if now - self._last_skip_log > 1.0:  # one line a second at most, however many arrive
            self.log.warning("skipped a batch: %s", detail)
            self._last_skip_log = now

    def _predict(self, msg: Message) -> list[dict[str, Any]]:
        students = msg["students"]
        if not students:
            return []
        length, crop = msg["length"], msg["crop"]
        if length != self.sequence_length and not self.baseline:  # the baseline reads the newest crop
            self._skip("length_mismatch", f"length {length} != the model's sequence length "
                                          f"{self.sequence_length} (set SEQUENCE_LENGTH={self.sequence_length})")
            return []
        crops = np.frombuffer(msg.payload, np.uint8).reshape(len(students), length, crop, crop, 3)
        if self.settings.slowdown > 0:
            time.sleep(self.settings.slowdown)  # fault injection: a slow consumer
        BATCH_SIZE.observe(len(students))
        FACES.inc(len(students))
        if self.baseline:
            return self._baseline_predictions(msg, students, crops[:, -1])
        if self.predictor.card.kind != "sequence":
            crops = crops[:, 0]
        started = time.perf_counter()
        heads = self.predictor.predict(crops)
        INFERENCE_SECONDS.observe(time.perf_counter() - started)
        card = self.predictor.card
        out = []
        for i, student in enumerate(students):
            probs = [float(v) for v in heads[card.primary_head][i]]
            entry = {**_identity(student), "probs": probs, "level": int(np.argmax(probs))}
            if card.kind == "multitask":
                entry["heads"] = {h: [float(v) for v in p[i]] for h, p in heads.items()}
            out.append(entry)
            PREDICTIONS.labels(str(entry["level"])).inc()
        return out

    def _baseline_predictions(self, msg: Message, students: list[dict], crops: np.ndarray) -> list[dict[str, Any]]:
        started = time.perf_counter()
        measured = self.predictor.measure(crops)
        INFERENCE_SECONDS.observe(time.perf_counter() - started)
        out = []
        t = msg.get("t_media")
        t = msg["t_capture"] if t is None else t  # the video's own clock for files
        if self.mark_follower is not None:
            self.mark_follower.watch(msg["session"])
        for student, signals in zip(students, measured, strict=True):
            key = (msg["session"], msg["stream"], student["student"])
            smoothed = self.smoother.update(key, signals)
            if self.neutral is not None:
                anchor = self.anchors.get((key[0], str(key[2])))
                if anchor is not None and not self.neutral.known(key):
                    self._anchor(key, *anchor)
                smoothed.update(self.neutral.update(key, t, signals.get("yaw"), signals.get("pitch")))
            probs, level, explained = self.predictor.assess(smoothed)
            explained["now"] = signals  # this frame's own reading, next to the window's average
            out.append({**_identity(student), "probs": probs, "level": level, "signals": explained})
            PREDICTIONS.labels(str(level)).inc()
        return out

    def _apply_marks(self) -> None:
        """A teacher's "attentive" (level 0) mark sets that student's neutral pose to the marked one."""
        if self.mark_follower is None:
            return
        for mark in self.mark_follower.poll():
            yaw, pitch = mark.signals.get("yaw"), mark.signals.get("pitch")
            if mark.level_given != 0 or yaw is None or pitch is None:
                continue
            # Kept for students not seen yet in this process (a restart re-reads every mark).
            self.anchors[(mark.session, mark.student)] = (yaw, pitch)
            for key in self.neutral.keys():  # type: ignore[union-attr]
                if key[0] == mark.session and str(key[2]) == mark.student:
                    self._anchor(key, yaw, pitch)

    def _anchor(self, key: tuple, yaw: float, pitch: float) -> None:
        self.neutral.anchor(key, yaw, pitch)  # type: ignore[union-attr]
        NEUTRAL_ANCHORS.inc()
        self.log.info("student %s of %s: neutral pose set by the teacher's mark to yaw %.1f, pitch %.1f",
                      key[2], key[0], yaw, pitch)


def _identity(student: dict[str, Any]) -> dict[str, Any]:
    return {"student": student["student"], "box": list(student["box"]), "conf": float(student.get("conf", 0.0))}
