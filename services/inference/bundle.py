"""Load a model bundle (shared/data/model_card.py) as a Predictor, checked against its card.

    predictor = load_predictor(Path("models/my-bundle"), engine="auto")
    probs = predictor.predict(crops)        # {head: (n, 4)}, 0 engaged .. 3 checked out

All crops of a frame go through the model in one call. A bundle that does not match its
card (missing file, invalid card, other input size, other head count) raises a BundleError
or CardError whose one-line message says what differs. `engine="auto"` times every engine
this machine can run at load time, at the class's faces per call (`probe_faces`,
ENGINE_PROBE_FACES), and keeps the fastest there among those whose outputs stay within
AUTO_TOLERANCE of the Keras model's; without TensorFlow (the Jetson image) the
agreement is the one the export step measured on real crops and wrote into the card. A bundle
that no engine here can run raises NoEngineError: the service stops rather than run the
baseline in its place.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.inference import engines
from services.inference.onnx_engine import OnnxEngine, TrtOptions, available_providers, onnxruntime_installed
from services.inference.predictor import Stateless, StudentKey
from services.inference.preprocess import prepare
from shared.data.levels import LEVELS
from shared.data.model_card import ModelCard

log = logging.getLogger(__name__)

KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
ONNX_FILE = "model.onnx"
ENGINES = ("auto", "keras", "tflite", "predict", "onnx")
AUTO_TOLERANCE = 1e-3
PROBE_FACES = 8  # faces per frame auto times the engines at, besides one (ENGINE_PROBE_FACES)
AUTO_ROUNDS = 5  # turns in which auto times every engine; each keeps its fastest call
# On a CPU, LiteRT keeps its place when another engine is faster at the class's size by less than
# this (timing noise: beside the other stages on 2 cores LiteRT's calls stretched least,
# bench/RESULTS.md). It was 10 %, which kept LiteRT where ONNX Runtime was 10 % faster at 8 faces
# (issue 26).
CPU_LITERT_MARGIN = 0.03
# A sequence sample is sequence_length images: the probe stays under this many images so a
# 20-frame model's load time stays bearable (it is timed at fewer samples instead).
PROBE_IMAGES = 32


class BundleError(ValueError):
    """The bundle cannot be used as its card describes (or must not be, under EU_AI_ACT_MODE)."""


class NoEngineError(BundleError):
    """No engine of this machine can run the bundle (missing runtime or file, or none agrees with Keras)."""


def tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


class Predictor(Stateless):
    """A bundle run by one engine (services/inference/predictor.py's interface)."""

    def __init__(self, card: ModelCard, engine: engines.Engine) -> None:
        self.card = card
        self._engine = engine

    @property
    def engine(self) -> str:
        return self._engine.name

    @property
    def device(self) -> str:
        """Where the engine computes: cpu, cuda, tensorrt (ONNX Runtime's provider) or gpu (TensorFlow)."""
        return str(getattr(self._engine, "device", "cpu"))

    def accepts(self, length: int) -> bool:
        return length == self.card.sequence_length

    def predict_students(self, keys: list[StudentKey], crops: np.ndarray,
                         t: Any = None) -> list[dict[str, Any]]:
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


def _check_shapes(card: ModelCard, where: str, input_shape: tuple[int | None, ...],
                  output_shapes: Sequence[tuple[int | None, ...]]) -> None:
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


def _seconds(engine: engines.Engine, x: np.ndarray) -> float:
    started = time.perf_counter()
    engine.run(x)
    return time.perf_counter() - started


def probe_sizes(card: ModelCard, faces: int) -> tuple[int, ...]:
    """Batch sizes auto times: one face, and the class's faces per frame (capped at PROBE_IMAGES images)."""
    n = max(1, min(faces, PROBE_IMAGES // max(1, card.sequence_length)))
    return (1, n) if n > 1 else (1,)


def _warm_up(engine: engines.Engine, card: ModelCard, faces: int) -> None:
    """Run the batch sizes a class sends once, so the first real frames pay for no tracing,
    allocation or tensor resize (LiteRT re-allocates when the number of faces changes)."""
    for n in probe_sizes(card, faces):
        engine.run(_probe_batch(card, n))


def _pick_fastest(card: ModelCard, candidates: list[engines.Engine], keras_first: bool = True,
                  faces: int = PROBE_FACES) -> engines.Engine:
    """The fastest engine at the class's size (`faces` per call), among those within tolerance of keras.

    Engines rank differently by batch size (LiteRT led at one face, ONNX Runtime at eight, on
    2 cores), so the choice is made at the batch the class sends: ENGINE_PROBE_FACES, the faces
    expected per call (one face is timed too, for the log). With keras_first the first candidate
    is Keras and every other one is compared with it here; otherwise (no TensorFlow) the
    candidates were admitted on the export's own check.

    The engines are timed in turns (AUTO_ROUNDS rounds, each engine once per round) and each
    keeps its fastest call: the other services load their models at the same moment, and a
    burst of their work then slows every engine alike instead of whichever was being timed (one
    engine timed after another flipped the choice between LiteRT and ONNX Runtime from run to
    run). An engine over three times the best after the first round is not timed further.
    """
    sizes = probe_sizes(card, faces)
    probe = _probe_batch(card, max(2, sizes[-1]))  # >= 2 samples: the agreement check covers a batch
    reference = candidates[0].run(probe) if keras_first else None
    admitted: list[tuple[engines.Engine, str]] = []
    notes = []
    for engine in candidates:
        outs = engine.run(probe)
        diff = 0.0 if reference is None else \
            max(float(np.max(np.abs(o - r))) for o, r in zip(outs, reference, strict=True))
        if diff > AUTO_TOLERANCE:
            notes.append(f"{engine.name} off by {diff:.1e}")
            continue
        _warm_up(engine, card, faces)  # traces, allocations, resizes: not part of the race
        admitted.append((engine, f", max diff {diff:.1e}" if reference is not None else ", checked at export"))
    best: dict[int, list[float]] = {id(e): [np.inf] * len(sizes) for e, _ in admitted}
    racing = [e for e, _ in admitted]

    def at_class_size(engine: engines.Engine) -> float:
        return best[id(engine)][-1]

    for round_ in range(AUTO_ROUNDS):
        for engine in racing:
            best[id(engine)] = [min(b, _seconds(engine, probe[:n])) for b, n in zip(best[id(engine)], sizes,
                                                                                    strict=True)]
        if round_ == 0:
            leader = min(at_class_size(e) for e in racing)
            racing = [e for e in racing if at_class_size(e) <= 3 * leader]
    for engine, agreement in admitted:
        each = best[id(engine)]
        label = f"{engine.name}/{getattr(engine, 'device', 'cpu')}"
        alone = f" (1 face {each[0] * 1000:.3g})" if len(sizes) > 1 else ""  # 3 digits: a tiny model's 0.123 ms too
        notes.append(f"{label} {each[-1] * 1000:.3g} ms{alone}{agreement}" +
                     ("" if engine in racing else ", dropped after one round"))
    chosen = min((e for e, _ in admitted), key=at_class_size)
    litert = next((e for e, _ in admitted if e.name == "tflite"), None)
    if (litert is not None and chosen is not litert and getattr(chosen, "device", "cpu") == "cpu"
            and at_class_size(litert) <= (1 + CPU_LITERT_MARGIN) * at_class_size(chosen)):
        notes.append(f"{chosen.name} within {CPU_LITERT_MARGIN:.0%} of tflite on the CPU: tflite kept "
                     "(it slows least beside the other stages)")
        chosen = litert
    log.info("engine auto: fastest of %d rounds at the class's %d face(s) a call (ENGINE_PROBE_FACES): %s -> %s "
             "(the fastest there of those within %g of keras)", AUTO_ROUNDS, sizes[-1], "; ".join(notes),
             chosen.name, AUTO_TOLERANCE)
    return chosen


def load_predictor(bundle_dir: Path, engine: str = "auto", eu_ai_act_mode: bool = False,
                   trt: TrtOptions | None = None, probe_faces: int = PROBE_FACES) -> Predictor:
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
        _warm_up(lite, card, probe_faces)
        log.info("loaded %s (%s) with engine tflite", card.name, bundle_dir)
        return Predictor(card, lite)
    if engine == "onnx":
        onnx = _onnx_engine(card, bundle_dir, NoEngineError, trt)  # no TensorFlow either
        _warm_up(onnx, card, probe_faces)  # TensorRT builds or loads its engine here
        log.info("loaded %s (%s) with engine onnx on %s", card.name, bundle_dir, onnx.device)
        return Predictor(card, onnx)
    if engine == "auto" and not (keras_path.is_file() and tensorflow_installed()):
        return _auto_without_keras(card, bundle_dir, trt, probe_faces)
    model = _keras_model(card, engine, bundle_dir, keras_path)
    chosen = _engine_with_keras(card, engine, model, bundle_dir, trt, probe_faces)
    _warm_up(chosen, card, probe_faces)
    log.info("loaded %s (%s) with engine %s", card.name, bundle_dir, chosen.name)
    return Predictor(card, chosen)


def _keras_model(card: ModelCard, engine: str, bundle_dir: Path, keras_path: Path) -> Any:
    """The bundle's Keras model, its shapes checked against the card; NoEngineError when it cannot run here."""
    if not keras_path.is_file():  # ENGINE=keras, predict or tflite without its file: nothing here runs it
        raise NoEngineError(f"model file {keras_path} is missing (the bundle has "
                            f"{sorted(p.name for p in bundle_dir.iterdir())})")
    if not tensorflow_installed():
        raise NoEngineError(f"ENGINE={engine} needs TensorFlow, which this machine does not have: use "
                            f"ENGINE=auto, onnx or tflite with a bundle exported with model.onnx/model.tflite")
    try:
        model = engines.load_keras(keras_path)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise BundleError(f"{keras_path}: cannot load the Keras model: {str(exc).splitlines()[0][:200]}") from None
    if len(model.inputs) != 1:
        raise BundleError(f"{keras_path}: model has {len(model.inputs)} inputs; the card describes one")
    _check_shapes(card, str(keras_path), tuple(model.inputs[0].shape[1:]),
                  [tuple(o.shape[1:]) for o in model.outputs])
    return model


def _engine_with_keras(card: ModelCard, engine: str, model: Any, bundle_dir: Path, trt: TrtOptions | None,
                       probe_faces: int) -> engines.Engine:
    """The engine ENGINE names, Keras at hand (auto: the fastest of those that match Keras's output)."""
    order = engines.keras_output_order(model, card.heads)
    keras_engine = engines.KerasEngine(model, order)
    if engine == "keras":
        return keras_engine
    if engine == "predict":
        return engines.PredictEngine(model, order)
    if engine == "tflite":
        lite = _tflite_engine(card, None, engines.convert_to_tflite(model), f"{bundle_dir / KERAS_FILE} (converted)")
        lite.match_outputs(keras_engine.run(_probe_batch(card, 2)), _probe_batch(card, 2))
        return lite
    candidates: list[engines.Engine] = [keras_engine]
    lite_or_none = _try_tflite(card, model, bundle_dir / TFLITE_FILE)
    if lite_or_none is not None:
        probe = _probe_batch(card, 2)
        lite_or_none.match_outputs(keras_engine.run(probe), probe)
        candidates.append(lite_or_none)
    onnx_or_none = _try_onnx(card, bundle_dir, trt)
    if onnx_or_none is not None:
        candidates.append(onnx_or_none)
    candidates.append(engines.PredictEngine(model, order))
    return _pick_fastest(card, candidates, faces=probe_faces)


def _auto_without_keras(card: ModelCard, bundle_dir: Path, trt: TrtOptions | None,
                        probe_faces: int = PROBE_FACES) -> Predictor:
    """ENGINE=auto where Keras cannot run: the formats the export checked against Keras on real crops."""
    reasons = ["keras: " + ("TensorFlow is not installed" if (bundle_dir / KERAS_FILE).is_file()
                            else f"no {KERAS_FILE}")]
    candidates: list[engines.Engine] = []
    for fmt, file in (("onnx", ONNX_FILE), ("tflite", TFLITE_FILE)):
        checked = card.exports.get(fmt) or {}
        diff = checked.get("max_abs_diff")
        if not (bundle_dir / file).is_file():
            reasons.append(f"{fmt}: no {file}")
        elif diff is None:
            reasons.append(f"{fmt}: not checked against Keras by the export step "
                           f"({checked.get('error') or 're-export the bundle'})")
        elif diff > AUTO_TOLERANCE:
            reasons.append(f"{fmt}: differs from Keras by {diff:.1e} (> {AUTO_TOLERANCE})")
        else:
            try:
                candidates.append(_onnx_on_the_best_device(card, bundle_dir, trt, reasons) if fmt == "onnx" else
                                  _tflite_engine(card, bundle_dir / file, None, str(bundle_dir / file)))
            except BundleError as exc:
                reasons.append(f"{fmt}: {exc}")
    if not candidates:
        raise NoEngineError(f"no engine on this machine can run {card.name!r} ({bundle_dir}): "
                            + "; ".join(reasons))
    chosen = _pick_fastest(card, candidates, keras_first=False, faces=probe_faces)
    _warm_up(chosen, card, probe_faces)
    log.info("loaded %s (%s) with engine %s (%s)", card.name, bundle_dir, chosen.name, "; ".join(reasons))
    return Predictor(card, chosen)


def _onnx_on_the_best_device(card: ModelCard, bundle_dir: Path, trt: TrtOptions | None,
                             reasons: list[str]) -> OnnxEngine:
    """model.onnx on the best provider (TensorRT, CUDA) whose outputs agree with the CPU provider's.

    The export checked the CPU provider against Keras; a GPU provider (TensorRT in FP16 above
    all) must agree with that within AUTO_TOLERANCE, else the next provider is tried.
    """
    cpu = _onnx_engine(card, bundle_dir, BundleError, trt, ["CPUExecutionProvider"])
    gpus = [p for p in available_providers() if p != "CPUExecutionProvider"]
    if not gpus:
        return cpu
    probe = _probe_batch(card, 2)
    reference = cpu.run(probe)
    for provider in gpus:
        try:
            gpu = _onnx_engine(card, bundle_dir, BundleError, trt, [provider, "CPUExecutionProvider"])
        except BundleError as exc:
            reasons.append(f"onnx with {provider}: {exc}")
            continue
        diff = max(float(np.max(np.abs(o - r))) for o, r in zip(gpu.run(probe), reference, strict=True))
        if diff <= AUTO_TOLERANCE:
            return gpu
        reasons.append(f"onnx/{gpu.device}: differs from onnx/cpu by {diff:.1e} (> {AUTO_TOLERANCE})")
    return cpu


def _onnx_engine(card: ModelCard, bundle_dir: Path, error: type[BundleError],
                 trt: TrtOptions | None = None, providers: list[str] | None = None) -> OnnxEngine:
    path = bundle_dir / ONNX_FILE
    if not onnxruntime_installed():
        raise error("ENGINE=onnx needs onnxruntime (or onnxruntime-gpu), which is not installed")
    if not path.is_file():
        raise error(f"{path} is missing: export the bundle again (`engagement-train export` writes model.onnx)")
    try:
        onnx = OnnxEngine(path, providers, trt=trt)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad files
        raise BundleError(f"{path}: cannot load the ONNX model: {str(exc).splitlines()[0][:200]}") from None
    _check_shapes(card, str(path), onnx.input_shape, onnx.output_shapes)
    onnx.use_heads(card.heads)
    return onnx


def _try_onnx(card: ModelCard, bundle_dir: Path, trt: TrtOptions | None) -> OnnxEngine | None:
    """ONNX Runtime for the auto choice when the bundle has model.onnx and onnxruntime is installed."""
    if not (bundle_dir / ONNX_FILE).is_file() or not onnxruntime_installed():
        return None
    try:
        notes: list[str] = []
        onnx = _onnx_on_the_best_device(card, bundle_dir, trt, notes)
        for note in notes:
            log.warning("engine auto: %s", note)
        return onnx
    except BundleError as exc:
        log.warning("engine auto: onnx unavailable (%s)", exc)
        return None


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
