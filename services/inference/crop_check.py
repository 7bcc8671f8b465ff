"""At start: is the model served the crop it was trained on? (its card's `crop` against facedetect's settings)

Both services read DETECTOR, CROP_MARGIN and CROP_SIZE from the same environment (the launcher
gives every child every setting; compose sets them on both), so inference knows facedetect's
crop without asking it. `auto` is resolved here as facedetect resolves it: the first detector of
shared/vision/detectors.AUTO_ORDER that loads on this box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.data.crop_record import crop_record, differences
from shared.data.model_card import ModelCard
from shared.ops import assets


@dataclass(frozen=True)
class CropVerdict:
    line: str  # the one line the service logs
    refuse: bool  # the crops differ and ALLOW_CROP_MISMATCH is off


def edge_detector(name: str, models_dir: str | Path | None) -> str:
    """The detector facedetect runs for DETECTOR=name (auto resolved; the name itself if none loads)."""
    if name != "auto":
        return name
    from shared.vision.detectors import DetectorUnavailable, make_detector  # noqa: PLC0415 - loads OpenCV, LiteRT

    try:
        return make_detector("auto", models=Path(models_dir) if models_dir else None).name
    except (DetectorUnavailable, assets.MissingAsset):
        return "auto"  # facedetect cannot start either; it says why


def edge_crop(settings: Any) -> dict[str, Any]:
    return crop_record(edge_detector(settings.detector, settings.models_dir), settings.crop_margin,
                       settings.crop_size)


def judge(card: ModelCard, edge: dict[str, Any], allow_mismatch: bool) -> CropVerdict:
    if not card.crop:
        why = "rule-based, trained on no crops" if card.baseline else "a bundle made before crops were recorded"
        return CropVerdict(f"model {card.name!r}: its card records no crop ({why}): not compared with "
                           f"facedetect's ({edge['detector']}, margin {edge['margin']:g}, {edge['size']} px)", False)
    found = differences(card.crop, edge)
    if not found:
        return CropVerdict(f"model {card.name!r} was trained on the crops facedetect cuts ({edge['detector']}, "
                           f"margin {edge['margin']:g}, {edge['size']} px)", False)
    said = "; ".join(found)
    if allow_mismatch:
        return CropVerdict(f"model {card.name!r} was trained on other crops than facedetect cuts ({said}): "
                           "running it anyway (ALLOW_CROP_MISMATCH=1), expect lower accuracy", False)
    return CropVerdict(f"model {card.name!r} was trained on other crops than facedetect cuts ({said}): refusing "
                       "to start; set DETECTOR/CROP_MARGIN/CROP_SIZE as the card says, or "
                       "--allow-crop-mismatch", True)
