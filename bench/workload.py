"""The benchmark's fixed inputs: 640x480 videos with real faces, and the reference-style bundle.

Videos: the astronaut (scikit-image) pasted 1 or 8 times per frame by the sample-video
renderer, present in every frame (no absent stretches: every frame has the stated number of
faces), written at 2 frames per second of media so that capture at FPS=2 keeps every frame
and decodes nothing it throws away.

Bundle: the reference system's frame classifier, MobileNetV2 224x224 + Flatten ->
Dense(1024) -> Dropout -> Dense(512) -> Dense(4), built by training/models.py with random
weights (ImageNet weights are unreachable here; speed does not depend on weight values)
and exported with model.keras + model.tflite + model.onnx + model_card.json like training/export.py.

    python -m bench.workload bundle --out DIR [--size 224]   (imports TensorFlow)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

from shared.ops.command_parser import CommandParser
from tools.sample_video import HEIGHT, WIDTH, astronaut_face, render_frame

VIDEO_FPS = 2.0  # the reference rate: one file frame per sampled frame


def make_faces_video(path: Path, faces: int, frames: int, fps: float = VIDEO_FPS) -> Path:
    """`frames` frames of 640x480 MJPG with `faces` drifting real faces in every one of them."""
    path = Path(path)
    if path.is_file() and cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == frames:
        return path  # the same inputs as last time: keep the file
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    face = astronaut_face()
    try:
        for i in range(frames):
            # seconds=0 keeps every frame inside the "present" part of the renderer's timeline.
            writer.write(render_frame(i / fps, 0.0, faces, face))
    finally:
        writer.release()
    return path


GALLERY_SIZE = (1280, 720)


def make_gallery_video(path: Path, faces: int, frames: int, fps: float = VIDEO_FPS) -> Path:
    """`frames` frames of a 1280x720 video-call gallery with `faces` real faces (lfw_subset),
    everyone present throughout (tools/gallery_video.py draws the tiles)."""
    from tools.gallery_video import Participant, _faces, render

    path = Path(path)
    if path.is_file() and cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == frames:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    people = [Participant(f"Student {i + 1}", face=(i * 7) % 100) for i in range(faces)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, GALLERY_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    try:
        for i in range(frames):
            writer.write(render(people, i / max(1, frames), GALLERY_SIZE, _faces()))
    finally:
        writer.release()
    return path


def build_reference_bundle(out: Path, size: int = 224) -> Path:
    """The reference classifier as a bundle; reused when it is already there (with every format)."""
    out = Path(out)
    if all((out / f).is_file() for f in ("model_card.json", "model.keras", "model.tflite", "model.onnx")):
        return out
    from shared.data.model_card import ModelCard
    from training.export import lfw_batch, write_formats
    from training.models import ModelOptions, build_model

    # dropout 0.2 and no L2: the reference head as it was (training's --reference-head).
    opts = ModelOptions(family="cnn", base="mobilenet_v2", image_size=size, weights="none", dropout=0.2, l2=0.0)
    model = build_model(opts)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    card = ModelCard(name=f"reference-cnn-mobilenetv2-{size} (random weights, speed only)", kind="frame",
                     input={"size": [size, size], "channels": 3, "color": "rgb", "sequence_length": 1},
                     preprocessing="mobilenet_v2", heads=["boredom"], affect=True, trained_on="nothing (benchmark)")
    # model.tflite and model.onnx as `engagement-train export` writes them, checked on real faces.
    write_formats(model, out, card, lfw_batch(card), "16 LFW faces (scikit-image)")
    card.save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.workload")
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("bundle")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    print(build_reference_bundle(args.out, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
