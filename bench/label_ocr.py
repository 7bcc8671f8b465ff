"""How well two offline OCR libraries read the name labels of a video call's tiles.

Writes the labelled gallery videos (tools/gallery_video.py: 13 px white names on a dark
translucent box over the picture, as Zoom and Teams draw them; `rooms`: a real photo's strip
behind the labels, the hard case), decodes them (MJPG, as a
screen recording), finds the tiles (services/facedetect/gallery.py) and reads each tile's
label with each library. Prints one row per library and grid:

- exact: the text read is the name, character for character (spaces collapsed);
- key: the name's key matches (shared/data/roster.py name_key: accents, case, spaces and
  punctuation dropped);
- matched: the key read matches the name as the tracker matches names (gallery.same_name:
  equal, or a few OCR slips apart) and no other participant's: what keying students needs;
- other: the key read matches another participant's name (a read that could swap two students);
- ms/tile and ms/frame (every tile of a frame, one thread).

    PYTHONPATH=$PWD python -m bench.label_ocr [--every 6] [--label-px 13]

rapidocr-onnxruntime must be installed (`pip install -e .[ocr]`); Tesseract is measured
when Debian's tesseract-ocr and PyPI's pytesseract are (they are not dependencies).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from services.facedetect.gallery import find_tiles, same_name
from services.facedetect.names import LabelReader, label_band
from shared.data.roster import name_key
from shared.ops.command_parser import CommandParser
from tools.gallery_video import layout_at, make_gallery_video

GRIDS = ((3, (1280, 720)), (5, (1920, 1080)))


def tesseract_reader() -> Callable[[np.ndarray], str] | None:
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
    except Exception:  # noqa: BLE001 - not installed (module or binary): skip its rows
        return None

    def read(band: np.ndarray) -> str:
        # Tesseract wants dark text on a light page, a few times larger than 13 px.
        gray = cv2.cvtColor(band, cv2.COLOR_BGR2GRAY)
        big = cv2.resize(255 - gray, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
        return str(pytesseract.image_to_string(big, config="--psm 7"))

    return read


def measure(name: str, read: Callable[[np.ndarray], str], grid: int, size: tuple[int, int], every: int,
            label_px: int, folder: Path) -> dict:
    video = make_gallery_video(folder / f"labels{grid}.avi", grid=grid, seconds=12.0, fps=5.0, size=size,
                               label_px=label_px, rooms=True)
    keys = {name_key(p.name) for p in video["people"]}
    cap = cv2.VideoCapture(video["path"])
    exact = keyed = matched = other = tiles_read = 0
    per_tile: list[float] = []
    per_frame: list[float] = []
    index = 0
    scale = size[0] / 1920
    while True:
        ok, image = cap.read()
        if not ok:
            break
        index += 1
        if (index - 1) % every:
            continue
        layout = layout_at(video["people"], (index - 1) / video["frames"])
        frame_ms = 0.0
        for tile in find_tiles(image):
            # Whose tile it is, from the script (the tile's centre in the 1920x1080 layout).
            cx, cy = (tile[0] + tile[2] / 2) / scale, (tile[1] + tile[3] / 2) / scale
            person = next(p for p, (x, y, w, h) in layout if x <= cx < x + w and y <= cy < y + h)
            started = time.perf_counter()
            text = read(label_band(image, tile))
            ms = (time.perf_counter() - started) * 1000
            per_tile.append(ms)
            frame_ms += ms
            tiles_read += 1
            text = " ".join(text.split())
            exact += text == person.name
            keyed += name_key(text) == name_key(person.name)
            own = name_key(person.name)
            others = any(same_name(name_key(text), k) for k in keys if k != own)
            matched += same_name(name_key(text), own) and not others
            other += others
        per_frame.append(frame_ms)
    cap.release()
    return {"library": name, "grid": f"{grid}x{grid} {size[0]}x{size[1]}", "tiles": tiles_read,
            "exact": 100 * exact / tiles_read, "key": 100 * keyed / tiles_read,
            "matched": 100 * matched / tiles_read, "other": 100 * other / tiles_read,
            "ms_tile": statistics.median(per_tile), "ms_frame": statistics.median(per_frame)}


def main(argv: list[str] | None = None) -> None:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=6, help="read every Nth frame of the 60-frame videos")
    parser.add_argument("--label-px", type=int, default=13, help="the labels' text size")
    args = parser.parse_args(argv)
    readers: list[tuple[str, Callable[[np.ndarray], str]]] = [("rapidocr-onnxruntime", LabelReader().read_text)]
    tesseract = tesseract_reader()
    if tesseract is not None:
        readers.append(("tesseract", tesseract))
    cv2.setNumThreads(1)
    print(f"{'library':22} {'grid':20} {'tiles':>5} {'exact %':>8} {'key %':>6} {'matched %':>9} {'other %':>8} "
          f"{'ms/tile':>8} {'ms/frame':>9}")
    with tempfile.TemporaryDirectory() as folder:
        for name, read in readers:
            for grid, size in GRIDS:
                r = measure(name, read, grid, size, args.every, args.label_px, Path(folder))
                print(f"{r['library']:22} {r['grid']:20} {r['tiles']:5d} {r['exact']:8.1f} {r['key']:6.1f} "
                      f"{r['matched']:9.1f} {r['other']:8.1f} {r['ms_tile']:8.1f} {r['ms_frame']:9.0f}")


if __name__ == "__main__":
    main()
