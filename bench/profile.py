"""Profile every service of one unthrottled pipeline run with py-spy (sampling, from outside).

    python -m bench.profile --model bundle|baseline --faces 1|8 [--seconds 60] [--out DIR]

Starts the pipeline as the benchmark does (bench/pipeline.py) and attaches
`py-spy record --format raw` to each service as soon as it is up; prints each service's
heaviest functions (self time and inclusive) and leaves the collapsed stacks in --out
(load them into speedscope or flamegraph.pl). py-spy comes from PyPI (`pip install py-spy`).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from bench.observe import _service_name
from bench.pipeline import run_pipeline
from bench.workload import VIDEO_FPS, build_reference_bundle, make_faces_video
from shared.ops.command_parser import CommandParser

SERVICES = {"capture", "facedetect", "sequencer", "inference", "aggregator", "reporter"}


def attach(out: Path, duration: float, rate: int, stop: threading.Event) -> list[subprocess.Popen]:
    """py-spy on every service process that appears (until `stop`)."""
    seen: set[int] = set()
    spies: list[subprocess.Popen] = []
    me = psutil.Process()
    while not stop.is_set():
        for child in me.children(recursive=True):
            name = _service_name(child)
            if name in SERVICES and child.pid not in seen:
                seen.add(child.pid)
                spies.append(subprocess.Popen(
                    ["py-spy", "record", "--pid", str(child.pid), "--duration", str(int(duration)), "--rate",
                     str(rate), "--format", "raw", "--nonblocking", "--output", str(out / f"{name}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        stop.wait(0.2)
    return spies


def top_functions(raw: Path, n: int = 12) -> list[tuple[str, float, float]]:
    """(function, self %, inclusive %) from py-spy's collapsed stacks."""
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        frames = stack.split(";")
        total += c
        self_count[frames[-1]] += c
        for f in set(frames):
            incl_count[f] += c
    return [(f, 100 * c / total, 100 * incl_count[f] / total) for f, c in self_count.most_common(n)] if total else []


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("bundle", "baseline"), default="bundle")
    parser.add_argument("--faces", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60.0, help="video length at 2 FPS")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/engagement-bench"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/engagement-bench/profile"))
    args = parser.parse_args(argv)
    if not shutil.which("py-spy"):
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    frames = int(args.seconds * VIDEO_FPS)
    video = make_faces_video(args.work_dir / f"faces{args.faces}-{frames}.avi", args.faces, frames)
    model = "baseline" if args.model == "baseline" else str(
        build_reference_bundle(args.work_dir / f"reference-bundle-{args.image_size}", args.image_size))
    stop = threading.Event()
    spies: list[subprocess.Popen] = []
    watcher = threading.Thread(target=lambda: spies.extend(attach(args.out, args.seconds * 2, args.rate, stop)))
    watcher.start()
    started = time.time()
    try:
        result = run_pipeline(video, model, False, args.work_dir, engine=args.engine, label="profile")
    finally:
        stop.set()
        watcher.join()
        for spy in spies:
            spy.wait(30)  # py-spy writes its file when the process it watches exits
    print(f"{result['fps']} frames/s, {time.time() - started:.0f} s; per-process CPU %: "
          + ", ".join(f"{k} {v['cpu_percent']}" for k, v in result["processes"].items()))
    for raw in sorted(args.out.glob("*.txt")):
        print(f"\n== {raw.stem}: function (self %, inclusive %)")
        for f, s, i in top_functions(raw):
            print(f"  {s:5.1f} {i:5.1f}  {f[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
