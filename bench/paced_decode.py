"""What a frame's decode costs as the capture does it: paced, n streams at 2 FPS each, one process a
stream or all of them in one process, against the same decode in a tight loop.

    python -m bench.paced_decode [--streams 80] [--seconds 20] [--fps 2] [--video FILE]

The capacity bench's kernel limit (bench/capacity.py) times decode in a tight loop, one frame after
another. A capture decodes one frame every 0.5 s, and between two of its frames the other streams'
work has gone through the caches. This bench decodes the same one-face webcam video (the capacity
bench's own, 640x480 MJPG; or --video) three ways, each stream's frames on its own due times with
the streams' phases spread over the period as the launcher spreads them:

- loop: one decoder, frame after frame (what the limit uses);
- processes: a process a stream (what `engagement run` and compose start: a capture a camera);
- one process: every stream's decoder in one process, the next due frame first (what a capture
  of several cameras would do).

The figure is CPU ms a decoded frame in steady state (each decoder's first frames left out: they
pay for the file's opening and the first allocations). Decode only: no sends, no services.
A benchmark, not a test: it prints figures, with the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from bench.workload import make_faces_video
from services.capture.sources import FileSource
from shared.ops.command_parser import CommandParser

WARMUP = 4  # frames of each decoder left out of the figure


def _spread(streams: int, period: float, start: float) -> list[float]:
    """Each stream's first due time: phases spread over the period, as the launcher's plan does."""
    return [start + (i / streams) * period for i in range(streams)]


def decode_paced(paths: list[str], fps: float, seconds: float, start: float) -> tuple[int, float]:
    """Decode `paths` (one stream each) on their due times until `seconds` after `start`, in this thread.
    Returns (frames after each decoder's warm-up, CPU seconds they took)."""
    cv2.setNumThreads(1)  # as the capture runs (CV_THREADS budget: 1)
    sources = [FileSource(p) for p in paths]
    period = 1.0 / fps
    due = _spread(len(paths), period, start)
    counted, cpu, done = 0, 0.0, [0] * len(paths)
    end = start + seconds
    try:
        while True:
            i = min(range(len(sources)), key=due.__getitem__)
            if due[i] >= end:
                break
            wait = due[i] - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            began = time.thread_time()
            frame = sources[i].read()
            took = time.thread_time() - began
            if frame is None:  # the file ended: this stream is done
                due[i] = float("inf")
                continue
            done[i] += 1
            if done[i] > WARMUP:
                counted += 1
                cpu += took
            due[i] += period
    finally:
        for source in sources:
            source.release()
    return counted, cpu


def decode_loop(path: str, frames: int) -> tuple[int, float]:
    """One decoder, frame after frame, as the capacity bench times it."""
    cv2.setNumThreads(1)
    source = FileSource(path)
    counted, cpu = 0, 0.0
    try:
        for n in range(frames + WARMUP):
            began = time.thread_time()
            frame = source.read()
            took = time.thread_time() - began
            if frame is None:
                break
            if n >= WARMUP:
                counted += 1
                cpu += took
    finally:
        source.release()
    return counted, cpu


def in_processes(paths: list[str], fps: float, seconds: float) -> tuple[int, float]:
    """A process a stream, each decoding its own on its due times (phases spread as one class). The class
    starts once every process is up: a process still importing when its first frames were due would
    decode them back to back, hot, and flatter the figure."""
    procs = [subprocess.Popen([sys.executable, "-m", "bench.paced_decode", "--child", path, "--fps", str(fps)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for path in paths]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a decoding process failed before it was ready (exit {proc.wait()})")
        start = time.monotonic() + 0.5  # CLOCK_MONOTONIC: one clock for every process of this machine
        for proc, phase_start in zip(procs, _spread(len(paths), 1.0 / fps, start), strict=True):
            assert proc.stdin is not None
            proc.stdin.write(f"{phase_start} {seconds - (phase_start - start)}\n")
            proc.stdin.flush()
        counted, cpu = 0, 0.0
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"a decoding process failed (exit {proc.returncode})")
            got = json.loads(out)
            counted += got["frames"]
            cpu += got["cpu_s"]
        return counted, cpu
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _figure(frames: int, cpu: float) -> float | None:
    return round(cpu / frames * 1000, 3) if frames else None


def measure(streams: int, seconds: float, fps: float, video: str) -> dict:
    paths = []
    links = Path(tempfile.mkdtemp(prefix="paced-decode-"))
    for i in range(streams):  # a file per stream, as each capture opens its own
        link = links / f"cam{i + 1}{Path(video).suffix}"
        if Path(video).stat().st_dev == links.stat().st_dev:
            os.link(video, link)
        else:
            link.symlink_to(Path(video).resolve())
        paths.append(str(link))
    try:
        loop = decode_loop(paths[0], max(16, int(seconds * fps)))
        procs = in_processes(paths, fps, seconds)
        one = decode_paced(paths, fps, seconds, time.monotonic() + 0.5)
    finally:
        for p in paths:
            Path(p).unlink(missing_ok=True)
        links.rmdir()
    return {"streams": streams, "fps": fps, "seconds": seconds, "video": video,
            "decode_ms_a_frame": {"loop": _figure(*loop), "processes": _figure(*procs), "one_process": _figure(*one)},
            "frames_counted": {"loop": loop[0], "processes": procs[0], "one_process": one[0]},
            "load": Path("/proc/loadavg").read_text().split()[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=80)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--video", default="", help="a video to decode (default: the capacity bench's webcam case)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)  # one stream of in_processes
    args = parser.parse_args(argv)
    if args.child:
        print("ready", flush=True)  # imported; told when its stream starts and for how long
        start, seconds = map(float, sys.stdin.readline().split())
        frames, cpu = decode_paced([args.child], args.fps, seconds, start)
        print(json.dumps({"frames": frames, "cpu_s": cpu}))
        return 0
    if args.streams < 1 or args.fps <= 0 or args.seconds <= 0:
        parser.error("--streams, --fps and --seconds must be positive")
    video = args.video
    if video and not Path(video).is_file():
        parser.error(f"--video {video}: no such file")
    if not video:
        video = str(make_faces_video(Path(tempfile.gettempdir()) / "paced-decode-webcam.avi", 1,
                                     int(args.seconds * args.fps) + 2 * WARMUP, args.fps))
    print(json.dumps(measure(args.streams, args.seconds, args.fps, video)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
