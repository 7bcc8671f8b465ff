"""CPU a frame of facedetect itself, without the pipeline around it (issue 26).

The service's own frame function (FaceDetectService.handle) driven in a loop in this process,
no sockets, on the benchmark's inputs at 2 FPS of media time (the grid search then runs every
2nd frame of a camera, every frame of a call): 640x480 MJPG webcams with 1 and 8 real faces
(bench/workload.py) and 1920x1080 calls of 5x5 and 7x7 real faces (tools/gallery_video.py,
JPEG-recorded). Prints CPU ms a frame: this thread's, and the process's (OpenCV's worker threads
too), and the grid search's alone, with the load average beside them (figures only mean something
on a quiet box). To compare two trees, run it in each in turn (A, B, A, B), a case a process, with
the working directory the tree's root (`git archive main | tar -x -C /tmp/A`, and this file copied
into /tmp/A/bench/):

    python -m bench.facedetect_cpu [--cases w1,w8,g5,g7] [--frames 240] [--call-frames 16] [--work-dir DIR]
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import msgspec
import numpy as np

from bench.workload import make_faces_video
from services.facedetect.gallery import find_tiles
from services.facedetect.service import FaceDetectService
from shared.bus.messages import Header, Message, make_header
from shared.ops.command_parser import CommandParser
from shared.ops.config import load_settings

GALLERY_SIZE = (1920, 1080)


class _Discard:
    """The faces link's place: what facedetect sends is dropped."""

    def send(self, header: Header, payload: bytes = b"") -> None:
        pass


def frames_of(case: str, work_dir: Path, count: int) -> list[np.ndarray]:
    """w<n>: the benchmark's 640x480 webcam video with n faces; g<n>: an n x n call."""
    n = int(case[1:])
    if case[0] == "w":
        video = cv2.VideoCapture(str(make_faces_video(work_dir / f"faces{n}.avi", n, count)))
        frames = []
        while (read := video.read())[0]:
            frames.append(read[1])
        video.release()
        return frames
    from tools.gallery_video import _faces, everyone, render

    faces = _faces()
    drawn = [render(everyone(n), i / 8, GALLERY_SIZE, faces) for i in range(8)]
    return [cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR) for f in drawn]


def _messages(frames: list[np.ndarray], stream: str, count: int) -> list[Message]:
    out = []
    for seq in range(count):
        image = frames[seq % len(frames)]
        header = make_header("frame", "bench", stream, seq, time.time(), width=image.shape[1], height=image.shape[0],
                             encoding="bgr", t_media=seq * 0.5, source="bench")
        out.append(Message("frame", header, image.tobytes()))
    return out


def cpu_ms(case: str, frames: list[np.ndarray], count: int) -> tuple[float, float]:
    """(thread, process) CPU ms a frame of facedetect's handle over `count` frames of one stream."""
    settings = msgspec.structs.replace(load_settings("facedetect", argv=[], env={}), metrics_port=0)
    service = FaceDetectService(settings)
    service.setup()
    service.senders["faces"] = _Discard()  # type: ignore[assignment]  # a stand-in sender: the bench times facedetect alone
    for msg in _messages(frames, "warm-up", 6):
        service.handle("frames", msg)
    batch = _messages(frames, case, count)
    thread, process = time.thread_time(), time.process_time()
    for msg in batch:
        service.handle("frames", msg)
    return (1000 * (time.thread_time() - thread) / count, 1000 * (time.process_time() - process) / count)


def grid_search_ms(frames: list[np.ndarray], rounds: int = 3) -> float:
    started = time.process_time()
    for _ in range(rounds):
        for image in frames:
            find_tiles(image)
    return 1000 * (time.process_time() - started) / (rounds * len(frames))


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.facedetect_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="w1,w8,g5,g7")
    parser.add_argument("--frames", type=int, default=240, help="frames a camera's case")
    parser.add_argument("--call-frames", type=int, default=16, help="frames a call's case (8 drawn, in turn)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/engagement-bench"))
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print("| case | frames | thread CPU ms a frame | process CPU ms a frame | find_tiles process CPU ms a call "
          "| load |")
    print("| --- | --- | --- | --- | --- | --- |")
    for case in args.cases.split(","):
        count = args.frames if case[0] == "w" else args.call_frames
        frames = frames_of(case, args.work_dir, max(count, 8))
        thread, process = cpu_ms(case, frames, count)
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"| {case} | {count} | {thread:.2f} | {process:.2f} | {grid_search_ms(frames[:20]):.2f} | {load} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
