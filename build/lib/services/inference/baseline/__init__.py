"""The attention baseline: face mesh head pose and eye openness, mapped to levels 0..3.

Not trained on engagement data; see services/inference/BASELINE.md for the thresholds.
"""

from services.inference.baseline.predictor import NAME, BaselinePredictor, baseline_card

__all__ = ["NAME", "BaselinePredictor", "baseline_card"]
