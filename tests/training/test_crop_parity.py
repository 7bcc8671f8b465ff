"""Parity: the same real frames through the training crop path and through a running facedetect give the same crops.

Frames: scikit-image's astronaut, and LFW faces enlarged into 640x480 webcam-sized frames (a
1280x720 one too, where the edge also searches slices). The training path is `engagement-train
faces` itself (crop_faces on a frames tree, its JPEGs read back); facedetect runs as a service
with real ZeroMQ sockets and gets the very pixels the training path read. Every detector a
model card may name is compared: the best face's box within a few pixels, the crop's pixels
within the JPEG noise of the training tree.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from skimage import data

from services.facedetect.service import FaceDetectService
from shared.bus.messages import make_header
from shared.ops.config import DETECTOR_NAMES
from shared.vision.detectors import crop_face, make_detector, with_slices
from tests.harness import Peer, Running
from tests.support.links import link
from training.faces import best_face, crop_faces, faces_tree
from training.manifest import MANIFEST, ImageRow, fps_root, read_manifest, write_manifest

pytestmark = pytest.mark.timeout(300)

SIZE, MARGIN = 224, 0.25  # the edge's CROP_SIZE and CROP_MARGIN defaults
BOX_PIXELS = 3  # "within a few pixels": the two paths run the same detector on the same pixels
# The training tree keeps crops as JPEG (quality 95): its noise, not a different crop, is all that may differ.
MEAN_ABS_DIFF = 3.0
CARD_DETECTORS = [d for d in DETECTOR_NAMES if d != "auto"]  # a card names the detector that ran


def _lfw_frame(index: int, width: int = 640, height: int = 480, side: int = 220) -> np.ndarray:
    gray = cv2.resize((data.lfw_subset()[index] * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    # A lit wall behind the student, as the synthetic set draws it (a flat grey one made the gallery search
    # see two call tiles in the lfw3 frame: facedetect's business, not this test's).
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    frame = (np.array([60, 90, 150], np.float32) * (1 - ramp) + np.array([170, 160, 120], np.float32) * ramp)
    frame = np.broadcast_to(frame, (height, width, 3)).astype(np.uint8).copy()
    x, y = (width - side) // 2 + 40, (height - side) // 2 - 20  # off centre, as a student sits
    frame[y:y + side, x:x + side] = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    return frame


def _frames() -> dict[str, np.ndarray]:
    frames = {"astronaut": cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)}
    frames |= {f"lfw{i}": _lfw_frame(i) for i in (0, 1, 2, 3)}
    frames["lfw5-720p"] = _lfw_frame(5, 1280, 720, 160)  # 16:9, a smaller face: the edge may slice it
    return frames


@pytest.fixture(scope="module")
def frames_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-split frames tree as `extract` writes it, of the real frames above."""
    root = fps_root(tmp_path_factory.mktemp("parity"), 1)
    rows = []
    for n, (name, frame) in enumerate(_frames().items()):
        rel = Path("all") / "Test" / f"{name}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), frame)
        rows.append(ImageRow(rel.as_posix(), "Test", f"clip{n}", f"p{n}", 0, 0, 0, 0, 0))
    write_manifest(root / MANIFEST, rows)
    return root


def _edge_faces(detector: str, frames: dict[str, np.ndarray]) -> dict[str, tuple[list[int], np.ndarray]]:
    """Each frame's most confident face from a running facedetect: (box, crop)."""
    _, frames_in, frames_ep = link("frames")
    faces_out, _, faces_ep = link("faces")
    sender = Peer(zmq.PUSH, frames_ep, bind=True)
    receiver = Peer(zmq.PULL, faces_ep, bind=False)
    found = {}
    try:
        # A face is a student at once (track_min_seconds 0); each frame its own session, so each is detected,
        # never followed from an earlier frame.
        with Running(FaceDetectService, frames_in=frames_in, faces_out=faces_out, detector=detector,
                     crop_size=SIZE, crop_margin=MARGIN, track_min_seconds=0):
            for name, image in frames.items():
                h, w = image.shape[:2]
                header = make_header("frame", f"parity-{uuid.uuid4().hex[:8]}", "cam0", 0, time.time(), width=w,
                                     height=h, encoding="bgr", t_media=0.0, source="test")
                sender.send(header, np.ascontiguousarray(image).tobytes())
                msg = receiver.recv()
                if msg.header.faces:
                    crops = np.frombuffer(msg.payload, np.uint8).reshape(-1, SIZE, SIZE, 3)
                    best = max(range(len(msg.header.faces)), key=lambda i: msg.header.faces[i]["conf"])
                    found[name] = (msg.header.faces[best]["box"], crops[best])
    finally:
        sender.close()
        receiver.close()
    return found


@pytest.mark.parametrize("detector", CARD_DETECTORS)
def test_training_crops_match_facedetect_crops(frames_tree: Path, detector: str) -> None:
    kept, _, _ = crop_faces(frames_tree, detector, SIZE, progress=False, margin=MARGIN)
    tree = faces_tree(frames_tree, detector)
    assert read_manifest(tree / MANIFEST) == kept
    training = {Path(r.path).stem: cv2.imread(str(frames_tree / r.path)) for r in kept}
    # facedetect gets the pixels the training path read (its JPEG frames decoded), not the originals.
    frames = {name: cv2.imread(str(frames_tree / "all" / "Test" / f"{name}.jpg")) for name in _frames()}
    edge = _edge_faces(detector, frames)
    assert "astronaut" in edge, f"{detector} misses the astronaut at the edge"
    assert set(training) == set(edge), f"{detector}: found in training {sorted(training)}, edge {sorted(edge)}"
    finder = with_slices(make_detector(detector))  # what crop_faces finds each frame's face with
    for name, (box, crop) in edge.items():
        mine = best_face(finder, frames[name])
        assert mine is not None
        assert np.abs(np.subtract(mine.box, box)).max() <= BOX_PIXELS, f"{detector} {name}: {mine.box} vs {box}"
        diff = float(np.abs(training[name].astype(np.int16) - crop.astype(np.int16)).mean())
        assert diff < MEAN_ABS_DIFF, f"{detector} {name}: crops differ by {diff:.2f} on average"
        # The tolerance tells crops apart: another margin (0.35) is far beyond it (measured 11 to 35).
        other = crop_face(frames[name], mine.box, SIZE, MARGIN + 0.1)
        assert float(np.abs(other.astype(np.int16) - crop.astype(np.int16)).mean()) > 2 * MEAN_ABS_DIFF
