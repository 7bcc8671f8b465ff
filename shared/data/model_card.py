"""The model bundle contract between training (writes it) and inference (loads it).

A bundle is a directory:

    model_card.json     this schema
    model.keras         the Keras model (Keras 3 format)
    model.tflite        optional, for LiteRT on the Jetson
    model.onnx          optional, for ONNX Runtime (CPU, CUDA, TensorRT on the Jetson)

model_card.json:
    schema          1
    name            free text, e.g. "cnn-mobilenetv2-faces-1fps"
    kind            "frame" (one crop -> levels), "sequence" (N crops -> levels) or
                    "multitask" (one crop -> one head per affective state)
    affect          true when trained on affect labels (boredom, engagement, confusion,
                    frustration) or expressions: refused under EU_AI_ACT_MODE
    baseline        true for the face-mesh attention baseline (not trained on engagement)
    input           {"size": [h, w], "channels": 3|1, "color": "rgb"|"bgr"|"gray",
                     "sequence_length": 1 for frame models, N for sequence models}
    preprocessing   one of PREPROCESSING below
    labels          names of the four levels, 0 really engaged ... 3 checked out
    heads           output heads in model output order, e.g. ["boredom"] or all four
    primary_head    the head whose levels are the engagement level (default heads[0])
    invert_heads    heads whose scale runs the other way (DAiSEE "engagement": 3 = very
                    engaged), so their probabilities are reversed to mean 0 engaged..3 not
    trained_on      "DAiSEE", "synth", ... ; metrics: free-form evaluation summary
    crop            the face crop the model was trained on (shared/data/crop_record.py): detector,
                    margin, size, color, alignment; {} when not recorded (older bundles, the baseline)
    run             where the model was made: {"tracking_uri": ..., "run_id": ...} of its MLflow run,
                    {} when not tracked
    exports         other formats written beside model.keras, checked by the export step:
                    {"onnx": {"file": "model.onnx", "max_abs_diff": 3e-08, "checked_on": "...", ...},
                     "tflite": {...}}; a format that could not be made has "file": null and "error"
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.crop_record import check_record
from shared.data.levels import LEVEL_LABELS

CARD_FILE = "model_card.json"
CARD_SCHEMA = 1
KINDS = ("frame", "sequence", "multitask")
# Said on every overlay, report and page while the attention baseline runs.
BASELINE_NOTE = "attention baseline - not trained on engagement data"
AFFECT_HEADS = ("boredom", "engagement", "confusion", "frustration")


def _scale_minus1_1(x: np.ndarray) -> np.ndarray:
    return x / 127.5 - 1.0


# Same arithmetic in training (on tf tensors) and at the edge (on numpy arrays).
PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mobilenet_v2": _scale_minus1_1,
    "xception": _scale_minus1_1,
    "inception_v3": _scale_minus1_1,
    "efficientnet": lambda x: x,  # EfficientNet rescales inside the model
    "unit": lambda x: x / 255.0,
    "fer": _scale_minus1_1,  # FER-2013 mini-Xception: (x/255 - 0.5) * 2
    "none": lambda x: x,
}


class CardError(ValueError):
    pass


@dataclass
class ModelCard:
    name: str
    kind: str
    input: dict[str, Any]
    preprocessing: str
    heads: list[str]
    affect: bool = True
    baseline: bool = False
    labels: list[str] = field(default_factory=lambda: list(LEVEL_LABELS))
    primary_head: str = ""
    invert_heads: list[str] = field(default_factory=list)
    trained_on: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    exports: dict[str, Any] = field(default_factory=dict)
    crop: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    schema: int = CARD_SCHEMA

    def __post_init__(self) -> None:
        self.primary_head = self.primary_head or (self.heads[0] if self.heads else "")
        self.validate()

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.input["size"]
        return int(h), int(w)

    @property
    def sequence_length(self) -> int:
        return int(self.input.get("sequence_length", 1))

    def validate(self) -> None:
        if self.schema != CARD_SCHEMA:
            raise CardError(f"model card schema {self.schema} is not {CARD_SCHEMA}")
        if self.kind not in KINDS:
            raise CardError(f"kind {self.kind!r} not in {KINDS}")
        if self.preprocessing not in PREPROCESSING:
            raise CardError(f"preprocessing {self.preprocessing!r} not in {sorted(PREPROCESSING)}")
        size = self.input.get("size")
        if not (isinstance(size, list | tuple) and len(size) == 2 and all(int(v) > 0 for v in size)):
            raise CardError(f"input.size must be [h, w], got {size!r}")
        if self.input.get("channels", 3) not in (1, 3):
            raise CardError("input.channels must be 1 or 3")
        if self.input.get("color", "rgb") not in ("rgb", "bgr", "gray"):
            raise CardError("input.color must be rgb, bgr or gray")
        if self.kind == "sequence" and self.sequence_length < 2:
            raise CardError("a sequence model needs input.sequence_length >= 2")
        if self.kind != "sequence" and self.sequence_length != 1:
            raise CardError(f"a {self.kind} model takes one crop (sequence_length 1)")
        if not self.heads or self.primary_head not in self.heads:
            raise CardError(f"primary_head {self.primary_head!r} not among heads {self.heads}")
        if self.kind == "multitask" and len(self.heads) < 2:
            raise CardError("a multitask model needs two or more heads")
        if len(self.labels) != 4:
            raise CardError("labels must name the four levels 0..3")
        why = check_record(self.crop)
        if why:
            raise CardError(why)

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        return PREPROCESSING[self.preprocessing](x)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, bundle_dir: Path) -> Path:
        bundle_dir.mkdir(parents=True, exist_ok=True)
        path = bundle_dir / CARD_FILE
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, bundle_dir: Path) -> ModelCard:
        path = Path(bundle_dir) / CARD_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CardError(f"{path} not found: a model bundle needs a model card") from None
        except json.JSONDecodeError as exc:
            raise CardError(f"{path} is not valid JSON: {exc}") from None
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise CardError(f"{path}: unknown fields {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise CardError(f"{path}: {exc}") from None
