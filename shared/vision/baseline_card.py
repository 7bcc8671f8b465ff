"""The attention baseline's model card, and a card with thresholds fitted to a class's marks.

Inference (services/inference/baseline) runs the baseline by it; `engagement-train
fit-baseline` writes a card with fitted thresholds, which inference loads with
BASELINE_THRESHOLDS. The thresholds and the rule are in shared/vision/baseline_rule.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.data.model_card import CardError, ModelCard
from shared.vision import baseline_rule as levels
from shared.vision.face_mesh import MESH_SIZE

NAME = "attention-baseline (face mesh; not trained on engagement data)"
HEAD = "attention"
LABELS = ["attentive", "partly attentive", "distracted", "looking away"]


TRAINED_ON = "nothing: rule-based thresholds on MediaPipe face-mesh head pose and eye openness"


def baseline_card(thresholds: levels.Thresholds | None = None, trained_on: str = TRAINED_ON,
                  fit: dict[str, Any] | None = None) -> ModelCard:
    """The baseline's card; with fitted thresholds (fit-baseline) it says what they were fitted to."""
    return ModelCard(
        name=NAME, kind="frame", affect=False, baseline=True,
        input={"size": [MESH_SIZE, MESH_SIZE], "channels": 3, "color": "rgb", "sequence_length": 1},
        preprocessing="unit", heads=[HEAD], labels=list(LABELS), trained_on=trained_on,
        metrics={"note": "not evaluated on engagement labels; see services/inference/BASELINE.md",
                 **levels.thresholds_doc(thresholds), **({"fit": fit} if fit else {})},
    )


def load_baseline_card(path: str | Path) -> tuple[ModelCard, levels.Thresholds]:
    """A baseline card file (engagement-train fit-baseline) and its thresholds, or CardError."""
    try:
        data = json.loads(Path(path).read_text())
        card = ModelCard(**data)
    except FileNotFoundError:
        raise CardError(f"{path} not found") from None
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise CardError(f"{path} is not a baseline card: {exc}") from None
    if not card.baseline or card.affect:
        raise CardError(f"{path} is not the attention baseline's card (baseline true, affect false)")
    try:
        thresholds = levels.check_thresholds(card.metrics.get("thresholds_for_levels_1_2_3"))
    except ValueError as exc:
        raise CardError(f"{path}: {exc}") from None
    return card, thresholds
