"""Load a model bundle (shared/model_card.py) as a Predictor, checked against its card.

    predictor = load_predictor(Path("models/my-bundle"), engine="auto")
    probs = predictor.predict(crops)        # {head: (n, 4)}, 0 engaged .. 3 checked out

All crops of a frame go through the model in one call. A bundle that does not match its
card (missing file, invalid card, other input size, other head count) raises a BundleError
or CardError whose one-line message says what differs. `engine="auto"` measures every
engine on a probe batch at load time and keeps the fastest whose outputs stay within
AUTO_TOLERANCE of the Keras model's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.inference import engines
from services.inference.predictor import Stateless, StudentKey
from services.inference.preprocess import prepare
from shared.levels import LEVELS
from shared.model_card import ModelCard

log = logging.getLogger(__name__)

KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
ENGINES = ("auto", "keras", "tflite", "predict")
AUTO_TOLERANCE = 1e-3


class BundleError(ValueError):
    """The bundle cannot be used as its card describes (or must not be, under EU_AI_ACT_MODE)."""


class Predictor(Stateless):
    """A bundle run by one engine (services/inference/predictor.py's interface)."""

    def __init__(self, card: ModelCard, engine: engines.Engine) -> None:
        self.card = card
        self._engine = engine

    @property
    def engine(self) -> str:
        return self._engine.name

    def accepts(self, length: int) -> bool:
        return length == self.card.sequence_length

    def predict_students(self, keys: list[StudentKey], crops: np.ndarray,
                         t: float | None = None) -> list[dict[str, Any]]:
        if self.card.kind != "sequence":
            crops = crops[:, 0]
        heads = self.predict(crops)
        out = []
        for i in range(len(keys)):
            probs = [float(v) for v in heads[self.card.primary_head][i]]
            entry: dict[str, Any] = {"probs": probs, "level": int(np.argmax(probs))}
            if self.card.kind == "multitask":
                entry["heads"] = {h: [float(v) for v in p[i]] for h, p in heads.items()}
            out.append(entry)
        return out

    def predict(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 BGR crops, (n, h, w, 3) or (n, length, h, w, 3) -> {head: (n, 4) probabilities}.

        Heads named in the card's invert_heads are reversed so every head reads 0 engaged .. 3 not.
        """
        n = len(crops)
        if n == 0:
            return {h: np.zeros((0, LEVELS), np.float32) for h in self.card.heads}
        outs = self._engine.run(prepare(crops, self.card))
        result = {}
        for head, out in zip(self.card.heads, outs, strict=True):
            probs = np.asarray(out, np.float32).reshape(n, LEVELS)
            result[head] = probs[:, ::-1].copy() if head in self.card.invert_heads else probs
        return result


def expected_input_shape(card: ModelCard) -> tuple[int, ...]:
    h, w = card.size
    channels = int(card.input.get("channels", 3))
    frame = (h, w, channels)
    return (card.sequence_length, *frame) if card.kind == "sequence" else frame


def _check_shapes(card: ModelCard, where: str, input_shape: tuple, output_shapes: list[tuple]) -> None:
    want = expected_input_shape(card)
    got = tuple(None if v is None else int(v) for v in input_shape)
    if got != want:
        raise BundleError(f"{where}: model input shape {got} does not match the card's {want} "
                          f"(kind {card.kind}, size {list(card.size)}, channels {want[-1]}"
                          f"{f', sequence_length {card.sequence_length}' if card.kind == 'sequence' else ''})")
    if len(output_shapes) != len(card.heads):
        raise BundleError(f"{where}: model has {len(output_shapes)} output(s) but the card names "
                          f"{len(card.heads)} head(s) {card.heads}")
    for head, shape in zip(card.heads, output_shapes, strict=True):
        if tuple(int(v) for v in shape if v is not None) != (LEVELS,):
            raise BundleError(f"{where}: output for head {head!r} has shape {tuple(shape)}, "
                              f"not ({LEVELS},) level probabilities")


def check_card(bundle_dir: Path, eu_ai_act_mode: bool = False) -> ModelCard:
    """The bundle's card, validated; refused under EU_AI_ACT_MODE when it is an affect model."""
    card = ModelCard.load(bundle_dir)  # CardError on a missing, invalid or unknown-field card
    if eu_ai_act_mode and card.affect:
        raise BundleError(f"EU_AI_ACT_MODE is on: refusing model {card.name!r} from {bundle_dir} "
                          f"(affect=true: it infers affective states, prohibited in education by the "
                          f"EU AI Act Art. 5(1)(f)); use MODEL=baseline (head pose and eyes only)")
    return card


def _probe_batch(card: ModelCard, n: int, seed: int = 0) -> np.ndarray:
    h, w = card.size
    shape = (n, card.sequence_length, h, w, 3) if card.kind == "sequence" else (n, h, w, 3)
    return prepare(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), card)


def _median_seconds(engine: engines.Engine, x: np.ndarray, calls: int = 3, give_up_after: float = np.inf) -> float:
    """Median time of a call after a warm-up; one call only when that one is already out of the race."""
    engine.run(x)  # warm-up: traces, allocations
    times: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        engine.run(x)
        times.append(time.perf_counter() - started)
        if times[0] > give_up_after:
            break
    return float(np.median(times))


def _pick_fastest(card: ModelCard, candidates: list[engines.Engine]) -> engines.Engine:
    """Fastest engine on probe batches of 1 and 2 samples among those within tolerance of keras.

    Small probes keep the load time of big sequence models bearable (a 20-frame MobileNetV2
    sample is 20 images); an engine three times slower than the best so far stops early.
    """
    probe = _probe_batch(card, 2)
    reference = candidates[0].run(probe)
    timings: list[tuple[float, engines.Engine]] = []
    notes = []
    for engine in candidates:
        outs = engine.run(probe)
        diff = max(float(np.max(np.abs(o - r))) for o, r in zip(outs, reference, strict=True))
        if diff > AUTO_TOLERANCE:
            notes.append(f"{engine.name} off by {diff:.1e}")
            continue
        best = min((t for t, _ in timings), default=np.inf)
        seconds = _median_seconds(engine, probe[:1], give_up_after=best) + \
            _median_seconds(engine, probe, give_up_after=best * 3)
        timings.append((seconds, engine))
        notes.append(f"{engine.name} {seconds * 1000:.2f} ms (1+2 samples, max diff {diff:.1e})")
    chosen = min(timings, key=lambda t: t[0])[1]
    log.info("engine auto: %s -> %s", "; ".join(notes), chosen.name)
    return chosen


def load_predictor(bundle_dir: Path, engine: str = "auto", eu_ai_act_mode: bool = False) -> Predictor:
    bundle_dir = Path(bundle_dir)
    if engine not in ENGINES:
        raise BundleError(f"unknown engine {engine!r}: use one of {ENGINES}")
    if not bundle_dir.is_dir():
        raise BundleError(f"model bundle {bundle_dir} is not a directory")
    card = check_card(bundle_dir, eu_ai_act_mode)
    keras_path, tflite_path = bundle_dir / KERAS_FILE, bundle_dir / TFLITE_FILE

    if engine == "tflite" and tflite_path.is_file():
        # No Keras needed at all: LiteRT alone, no TensorFlow import.
        lite = _tflite_engine(card, tflite_path, None, str(tflite_path))
        log.info("loaded %s (%s) with engine tflite", card.name, bundle_dir)
        return Predictor(card, lite)
    if not keras_path.is_file():
        raise BundleError(f"model file {keras_path} is missing (the bundle has "
                          f"{sorted(p.name for p in bundle_dir.iterdir())})")
    try:
        model = engines.load_keras(keras_path)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise BundleError(f"{keras_path}: cannot load the Keras model: {str(exc).splitlines()[0][:200]}") from None
    if len(model.inputs) != 1:
        raise BundleError(f"{keras_path}: model has {len(model.inputs)} inputs; the card describes one")
    _check_shapes(card, str(keras_path), tuple(model.inputs[0].shape[1:]),
                  [tuple(o.shape[1:]) for o in model.outputs])
    order = engines.keras_output_order(model, card.heads)
    keras_engine = engines.KerasEngine(model, order)

    chosen: engines.Engine
    if engine == "keras":
        chosen = keras_engine
    elif engine == "predict":
        chosen = engines.PredictEngine(model, order)
    elif engine == "tflite":
        chosen = _tflite_engine(card, None, engines.convert_to_tflite(model), f"{keras_path} (converted)")
        chosen.match_outputs(keras_engine.run(_probe_batch(card, 2)), _probe_batch(card, 2))
    else:
        candidates: list[engines.Engine] = [keras_engine]
        lite = _try_tflite(card, model, tflite_path)
        if lite is not None:
            probe = _probe_batch(card, 2)
            lite.match_outputs(keras_engine.run(probe), probe)
            candidates.append(lite)
        candidates.append(engines.PredictEngine(model, order))
        chosen = _pick_fastest(card, candidates)
    chosen.run(_probe_batch(card, 1))  # warm-up: the first real batch must not pay for tracing
    log.info("loaded %s (%s) with engine %s", card.name, bundle_dir, chosen.name)
    return Predictor(card, chosen)


def _tflite_engine(card: ModelCard, path: Path | None, content: bytes | None, where: str) -> engines.TFLiteEngine:
    try:
        lite = engines.TFLiteEngine(path, content)
    except Exception as exc:  # noqa: BLE001 - LiteRT raises RuntimeError/ValueError for bad files
        raise BundleError(f"{where}: cannot load the TFLite model: {str(exc).splitlines()[0][:200]}") from None
    _check_shapes(card, where, lite.input_shape, lite.output_shapes)
    return lite


def _try_tflite(card: ModelCard, model: object, tflite_path: Path) -> engines.TFLiteEngine | None:
    """TFLite for the auto choice: the bundle's file, else a conversion; None when neither works."""
    try:
        if tflite_path.is_file():
            return _tflite_engine(card, tflite_path, None, str(tflite_path))
        return _tflite_engine(card, None, engines.convert_to_tflite(model), "converted model")
    except Exception as exc:  # noqa: BLE001 - e.g. ops LiteRT lacks: auto just leaves tflite out
        log.warning("engine auto: tflite unavailable (%s)", str(exc).splitlines()[0][:200])
        return None
