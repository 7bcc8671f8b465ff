"""The face crop a model was trained on, as its model card records it, and the edge's compared with it.

A model trained on one kind of crop and served another loses accuracy without any error (the
detectors draw different boxes, a margin shows more or less of the head), so the training
`faces` step writes this record beside its crops, the export step copies it into the card
(`crop`), and inference compares it with facedetect's DETECTOR, CROP_MARGIN and CROP_SIZE at
start (services/inference/service.py).

    {"detector": "blazeface", "margin": 0.25, "size": 224, "color": "bgr", "alignment": "none"}

`detector` is the detector that ran, never `auto` (auto is resolved when the crops are made, and
again at the edge when they are compared); `color` is the order of the crop's channels as cut
(OpenCV's BGR at the edge and on disk; input.color of the card says what the model takes);
`alignment` is "none": neither side rotates a face upright.
"""

from __future__ import annotations

from typing import Any

FIELDS = ("detector", "margin", "size", "color", "alignment")
EDGE_COLOR = "bgr"  # facedetect cuts crops from OpenCV frames
EDGE_ALIGNMENT = "none"  # shared/vision/detectors.crop_face: a square around the box, no rotation
# Margins are floats written to JSON and read back from the environment: equal within this.
MARGIN_TOLERANCE = 1e-6


def crop_record(detector: str, margin: float, size: int) -> dict[str, Any]:
    """The record of crops cut as the edge cuts them, by `detector` (a resolved name, not auto)."""
    return {"detector": detector, "margin": float(margin), "size": int(size), "color": EDGE_COLOR,
            "alignment": EDGE_ALIGNMENT}


def check_record(crop: dict[str, Any]) -> str | None:
    """Why a card's crop record is unusable, or None (an empty record means: not recorded)."""
    if not crop:
        return None
    missing = [f for f in FIELDS if f not in crop]
    if missing:
        return f"crop lacks {', '.join(missing)}"
    if crop["detector"] == "auto":
        return "crop.detector must name the detector that ran, not auto"
    return None


def differences(card_crop: dict[str, Any], edge: dict[str, Any]) -> list[str]:
    """What differs between the card's crop and the edge's, each as 'field card X, edge Y'."""
    found = []
    for name in FIELDS:
        mine, theirs = card_crop.get(name), edge.get(name)
        if name == "margin" and mine is not None and theirs is not None:
            if abs(float(mine) - float(theirs)) <= MARGIN_TOLERANCE:
                continue
        elif mine == theirs:
            continue
        found.append(f"{name} {mine} in the card, {theirs} at the edge")
    return found
