"""`engagement bench-gallery`: a 5x5 video-call gallery at 1920x1080, watched off the screen.

A virtual X server (Xvfb) shows ffplay playing a 5x5 gallery of real faces (lfw_subset) full
screen; `engagement run --source window:...` watches it at 2 FPS with the attention baseline
for --seconds, then the window closes and the class ends. Prints frames/s through the
pipeline and capture -> prediction latency (header stamps), per stage too, and writes JSON.
A figure, not a test: on a shared machine run it short and say so next to the numbers.

    engagement bench-gallery [--seconds 30] [--grid 5] [--out gallery-results.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from bench.arguments import out_refusal
from bench.pipeline import run_pipeline
from shared.ops.command_parser import CommandParser
from tools.gallery_video import make_gallery_video
from tools.xdisplay import player, xvfb

TITLE = "Gallery bench"
SIZE = (1920, 1080)


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="engagement bench-gallery", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="how long the class is watched")
    p.add_argument("--grid", type=int, default=5, help="grid x grid participants")
    p.add_argument("--out", type=Path, default=Path("gallery-results.json"))
    return p


def measure(seconds: float, grid: int, work: Path) -> dict:
    video = make_gallery_video(work / f"gallery{grid}.avi", grid=grid, seconds=20.0, fps=10.0, size=SIZE)
    with xvfb(*SIZE) as display, player(display, video["path"], TITLE, left=0, top=0, size=SIZE) as ffplay:
        os.environ["DISPLAY"] = display  # the launcher's preflight grabs a frame in this process
        closer = threading.Timer(seconds, ffplay.terminate)  # the call's window closes: the class ends
        closer.start()
        try:
            result = run_pipeline(Path(f"window:{TITLE}"), "baseline", realtime=True, work=work,
                                  extra_env={"DISPLAY": display, "HEADLESS": "1"}, label=f"gallery{grid}")
        finally:
            closer.cancel()
    result["grid"] = grid
    result["frame_size"] = list(SIZE)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.grid < 1:
        parser.error("--seconds must be positive, --grid at least 1")
    if refusal := out_refusal(out=args.out):
        parser.error(refusal)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="engagement-gallery-") as tmp:
        started = time.time()
        r = measure(args.seconds, args.grid, Path(tmp))
    lat = r["latency_ms"]
    print(f"{args.grid}x{args.grid} gallery at {SIZE[0]}x{SIZE[1]}, window source, attention baseline, "
          f"{args.seconds:.0f} s ({time.time() - started:.0f} s with start-up)")
    print(f"  frames/s through the pipeline: {r['fps']}  (frames captured {r['frames_captured']}, "
          f"through {r['frames_through']}, dropped {r['frames_dropped']})")
    print(f"  faces per frame: {r['faces_per_frame']}")
    for stage in ("capture_to_prediction", "facedetect", "inference"):
        print(f"  {stage} latency ms: {lat.get(stage)}")
    args.out.write_text(json.dumps(r, indent=1, default=str))
    print(f"  figures: {args.out}")
    return 0 if r["exit_code"] == 0 else 1
