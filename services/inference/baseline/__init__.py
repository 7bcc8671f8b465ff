"""The attention baseline: face mesh head pose and eye openness, mapped to levels 0..3.

Not trained on engagement data; see services/inference/BASELINE.md for the thresholds (shared/vision/baseline_rule.py).
"""

from services.inference.baseline.predictor import BaselinePredictor
from shared.vision.baseline_card import NAME, baseline_card

__all__ = ["NAME", "BaselinePredictor", "baseline_card"]
