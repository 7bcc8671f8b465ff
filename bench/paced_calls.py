"""The inference model call as the 2 FPS pipeline makes it: one batch every --interval seconds.

    python -m bench.paced_calls --bundle B --video V [--faces 8] [--calls 120] [--engine auto]

Loads the bundle as the inference service does (its CPU budget from CPU_BUDGETS first, then
`load_predictor`), then times `predict` on the same real crops once every interval, so the
thread pools idle between calls as they do at 2 FPS. Prints p50/p90/p99/max of the call and
the garbage collections that ran during calls (generation, ms), to tell a slow call's cause,
and the load average around the run (other processes on the cores stretch multi-threaded calls).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.engines import real_crops
from shared.ops import cpu_budget
from shared.ops.command_parser import CommandParser


class GcWatch:
    """Garbage collections as they happen: (generation, seconds) of each."""

    def __init__(self) -> None:
        self.events: list[tuple[int, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.events.append((int(info["generation"]), time.perf_counter() - self._started))


def paced_calls(bundle: Path, video: str, faces: int, calls: int, interval: float, engine: str,
                threads: int = 0) -> dict:
    from services.inference.bundle import load_predictor

    # The service's budget; `threads` (> 0) overrides the model's threads (LiteRT, ONNX Runtime, TensorFlow).
    given = dict.fromkeys(("CV_THREADS", "LITERT_THREADS", "ORT_THREADS", "TF_INTRA_OP_THREADS",
                           "TF_INTER_OP_THREADS"), 0)
    given.update({k: threads for k in ("LITERT_THREADS", "ORT_THREADS", "TF_INTRA_OP_THREADS")})
    budget = cpu_budget.resolve("inference", given)
    cpu_budget.apply(budget["CV_THREADS"], budget["LITERT_THREADS"], budget["TF_INTRA_OP_THREADS"],
                     budget["TF_INTER_OP_THREADS"], "", budget["ORT_THREADS"])
    predictor = load_predictor(bundle, engine, probe_faces=faces)
    crops = real_crops(video, faces)
    watch = GcWatch()
    times, collected = [], []
    for _ in range(calls):
        time.sleep(interval)
        before = len(watch.events)
        started = time.perf_counter()
        predictor.predict(crops)
        times.append(time.perf_counter() - started)
        collected.append(watch.events[before:])
    ms = np.asarray(times) * 1000
    slow = np.argsort(ms)[-3:][::-1]
    return {"engine": predictor.engine, "faces": faces, "budget": budget, "interval": interval, "calls": calls,
            "ms": {q: round(float(np.percentile(ms, int(q[1:]))), 2) for q in ("p50", "p90", "p99")}
            | {"max": round(float(ms.max()), 2)},
            "slowest": [{"call": int(i), "ms": round(float(ms[i]), 2),
                         "gc": [(g, round(s * 1000, 2)) for g, s in collected[i]]} for i in slow],
            "gc_during_calls": [(g, round(s * 1000, 2)) for events in collected for g, s in events],
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.paced_calls", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--video", required=True, help="a video whose first frame has faces")
    parser.add_argument("--faces", type=int, default=8)
    parser.add_argument("--calls", type=int, default=120)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between calls (0.5: 2 FPS)")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="the model's threads (default: the service's budget)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = paced_calls(args.bundle, args.video, args.faces, args.calls, args.interval, args.engine,
                         threads=args.threads)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
