"""Where the pipeline's cores go beside inference: py-spy on every service of an unthrottled run.

    python -m bench.spy [--faces 1] [--frames 600] [--seconds 15] [--top 8] [--out spy.json]

One `engagement run` (services/launcher) of a 640x480 real-face video, every frame as fast as
the pipeline takes it (REALTIME=0, FPS=0), attention baseline. Once a service has run
--warmup seconds, `py-spy record` samples it for --seconds (100 a second, not blocking it)
and each sample's innermost Python function is counted: per service, the share of one core
its threads worked (samples over samples possible; waits in poll, select and socket reads
apart, see WAITS) and its busiest functions (time in C extensions counts to the Python
function that called them; a blocking send to a full queue counts as Socket.send). py-spy comes from PyPI
(`pip install py-spy`); it needs ptrace rights over the services (same user, or root).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psutil

from bench.observe import MetricsScraper, UpdatesTap, _service_name
from bench.pipeline import launch_observed
from bench.workload import make_faces_video
from shared.ops.command_parser import CommandParser

RATE = 100  # samples a second
# Where a thread waits, not works: py-spy without --native cannot tell a thread blocked in a C
# call (ZeroMQ's poll, a socket read) from one computing, so these are counted apart.
WAITS = ("Poller.poll", "_PollLikeSelector.select", "EpollSelector.select", "Condition.wait", "Event.wait",
         "GarbageCollectorThread.run", "SocketIO.readinto", "SocketBuffer._read_from_socket")


def py_spy() -> str | None:
    """py-spy on PATH, else beside this Python (a venv's bin/ is not on PATH unless activated)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.is_file() else None)


def parse_raw(text: str) -> tuple[int, Counter]:
    """py-spy's raw (collapsed) output: 'frame;frame;... count' lines -> (samples, innermost function counts)."""
    total, leaves = 0, Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        # "function (file.py:line)": the function and its file, without the line (one row a function).
        name, _, where = leaf.partition(" (")
        leaves[f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})"] += int(count)
        total += int(count)
    return total, leaves


class Spies:
    """Starts one `py-spy record` per service as the services appear (after their warm-up)."""

    def __init__(self, work: Path, seconds: float, warmup: float) -> None:
        self.work, self.seconds, self.warmup = work, seconds, warmup
        self.spies: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seen: dict[int, float] = {}
        me = psutil.Process()
        while not self.stop.wait(0.2):
            for child in me.children(recursive=True):
                name = _service_name(child)
                if name is None or name in self.spies or name == "redis":
                    continue
                first = seen.setdefault(child.pid, time.monotonic())
                if time.monotonic() - first < self.warmup:
                    continue
                out = self.work / f"{name}.txt"
                cmd = [py_spy() or "py-spy", "record", "--pid", str(child.pid), "--rate", str(RATE),
                       "--duration", str(int(self.seconds)), "--format", "raw", "--nonblocking", "-o", str(out)]
                self.spies[name] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)

    def results(self, top: int) -> dict[str, dict]:
        self.stop.set()
        self.thread.join(2)
        out = {}
        for name, (proc, path) in sorted(self.spies.items()):
            try:
                _, err = proc.communicate(timeout=self.seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if not path.is_file():
                out[name] = {"error": (err or b"").decode(errors="replace").strip().splitlines()[-1:]}
                continue
            samples, leaves = parse_raw(path.read_text())
            work = Counter({f: n for f, n in leaves.items() if not f.startswith(WAITS)})
            possible = RATE * self.seconds
            out[name] = {"samples": samples, "waiting_share_of_a_core": round((samples - work.total()) / possible, 3),
                         "working_share_of_a_core": round(work.total() / possible, 3),
                         "top": [{"function": f, "share_of_a_core": round(n / possible, 3)}
                                 for f, n in work.most_common(top)]}
        return out


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(prog="python -m bench.spy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faces", type=int, default=1)
    p.add_argument("--frames", type=int, default=600, help="frames of the video (all are processed)")
    p.add_argument("--seconds", type=float, default=15.0, help="how long each service is sampled")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds after a service starts before sampling")
    p.add_argument("--top", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("spy.json"))
    p.add_argument("--keep", type=Path, default=None, help="copy py-spy's raw stacks (one file a service) here")
    args = p.parse_args(argv)
    if py_spy() is None:
        print("py-spy is not installed: pip install py-spy")
        return 2
    with tempfile.TemporaryDirectory(prefix="engagement-spy-") as tmp:
        work = Path(tmp)
        video = make_faces_video(work / "class.avi", args.faces, args.frames)
        scraper, tap = MetricsScraper(), UpdatesTap()
        spies = Spies(work, args.seconds, args.warmup)

        def adjust(envs: dict[str, dict[str, str]]) -> None:
            for e in envs.values():
                e.update({"REALTIME": "0", "FPS": "0", "LOG_LEVEL": "WARNING"})

        code, started = launch_observed(["--source", str(video), "--model", "baseline", "--session-id",
                                         f"bench-spy-{uuid.uuid4().hex[:8]}", "--report-dir", str(work / "reports")],
                                        adjust, scraper, tap)
        arrivals = sorted(r.arrived for r in tap.records)
        fps = round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 1) if len(arrivals) > 1 else None
        result = {"faces": args.faces, "frames_through": len(tap.records), "fps": fps, "exit_code": code,
                  "seconds_sampled": args.seconds, "services": spies.results(args.top)}
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for _, path in spies.spies.values():
                if path.is_file():
                    shutil.copy(path, args.keep / path.name)
    print(f"{args.faces} face(s), unthrottled: {fps} frames/s; py-spy {args.seconds:g} s per service, "
          f"innermost Python function of the active threads' samples")
    for name, r in result["services"].items():
        if "error" in r:
            print(f"  {name}: py-spy failed: {r['error']}")
            continue
        print(f"  {name}: working {r['working_share_of_a_core']:.0%} of a core (waiting in poll/reads "
              f"{r['waiting_share_of_a_core']:.0%}): " +
              "; ".join(f"{t['function']} {t['share_of_a_core']:.0%}" for t in r["top"]))
    args.out.write_text(json.dumps(result, indent=1))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
