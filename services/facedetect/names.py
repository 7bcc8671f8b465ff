"""The name label of a video call's tile, read by OCR (GALLERY_NAMES=ocr).

Zoom and Teams write each participant's name at the bottom left of their tile, small white
text on a dark translucent box over the picture. `LabelReader` reads that band with
RapidOCR (rapidocr-onnxruntime: PaddleOCR's PP-OCRv4 models shipped inside the wheel, run by
onnxruntime; no download at run time). The measured reasons for this choice are in the
README's gallery section (`python -m bench.label_ocr`).

RapidOCR reads the letters reliably but not always the spaces, the case of a first letter or
an accent ("LukasMuller" for "Lukas Müller"), so students are keyed on `name_key` (letters and
digits only, without accents or case: shared/data/roster.py), which the same name gives every time
it is read (or one OCR slip apart: gallery.same_name).
"""

from __future__ import annotations

import numpy as np

from shared.data.roster import name_key

Box = tuple[int, int, int, int]

BAND_HEIGHT = 0.16  # of the tile: the label's box (13 px text, padded) with room to spare
BAND_MIN_PX = 32
BAND_WIDTH = 0.75  # of the tile: longer names are cut with "..." by the apps anyway
MIN_SCORE = 0.8  # RapidOCR's confidence in a text line; below it a read is noise (a patch of the picture)
MIN_KEY = 2  # characters: a shorter key is not a name


class OcrMissing(RuntimeError):
    """GALLERY_NAMES=ocr without the OCR library installed (one line saying how to add it)."""


def label_band(image: np.ndarray, tile: Box) -> np.ndarray:
    """The bottom-left band of a tile, where the apps draw the name."""
    x, y, w, h = tile
    band = max(BAND_MIN_PX, int(h * BAND_HEIGHT))
    return image[max(y, y + h - band):y + h, x:x + int(w * BAND_WIDTH)]


class LabelReader:
    """RapidOCR on one thread, its text detector at the band's own scale (its default of 736 px
    on the short side makes a 33 px band 20 times larger and 40 times slower)."""

    def __init__(self) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise OcrMissing("GALLERY_NAMES=ocr needs rapidocr-onnxruntime: pip install -e '.[ocr]' "
                             "(or set GALLERY_NAMES=off)") from None
        self.engine = RapidOCR(det_limit_side_len=64, det_limit_type="min", use_cls=False,
                               intra_op_num_threads=1, inter_op_num_threads=1)

    def read_text(self, band: np.ndarray) -> str:
        """The label's text ('' when none): the leftmost confident line, with the pieces of it
        the detector split off (a wide space)."""
        result, _ = self.engine(np.ascontiguousarray(band), use_cls=False)
        lines = sorted(((min(p[0] for p in box), (min(p[1] for p in box) + max(p[1] for p in box)) / 2,
                         max(p[0] for p in box), text)
                        for box, text, score in result or [] if float(score) >= MIN_SCORE), key=lambda r: r[0])
        if not lines:
            return ""
        left, middle, right, text = lines[0]
        height = band.shape[0]
        for x0, cy, x1, more in lines[1:]:
            if abs(cy - middle) < height / 4 and x0 - right < height:
                text, right = f"{text} {more}", x1
        return str(text)

    def read(self, image: np.ndarray, tile: Box) -> str | None:
        """The tile's name label, or None when there is none that reads as a name."""
        text = " ".join(self.read_text(label_band(image, tile)).split())
        return text if len(name_key(text)) >= MIN_KEY else None
