"""What the services after inference cost per frame: aggregator, reporter and web, fed like a class.

    python -m bench.downstream [--streams 29] [--faces 1] [--seconds 20] [--fps 2] [--tree DIR]
                               [--size 640x480] [--browsers 0] [--spy reporter] [--cprofile web] [--out FILE]

The three services run as their own processes (`python -m engagement.cli <name>`), wired as
`engagement run` wires them (the preview and live links bound by their subscriber), on the real
Redis with a key prefix of their own. This process stands in for capture and inference: for each
of --streams streams at --fps, a real-face 640x480 BGR preview frame and its `predictions`
message (the attention baseline's, --faces faces), paced like live cameras and spread over the
sampling period; it reads the aggregator's acks as inference does. Once every stream has sent
its eos and the report is written, each service's CPU time over the paced part (from psutil,
user + system, after a warm-up) is divided by the frames: CPU ms a frame (the process's, and its
main thread's: the service's loop), and the share of one core. --tree runs the services from
another checkout (an A/B against an older commit); --spy records one service with py-spy over the
paced part and prints its busiest functions; --cprofile one service's main thread with cProfile.

A benchmark, not a test: it prints figures; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import zmq

from shared.bus.messages import encode, make_header
from shared.ops.command_parser import CommandParser
from shared.ops.ports import free_ports

SERVICES = ("aggregator", "reporter", "web")
WARMUP_SECONDS = 2.0
MODEL = {"name": "attention-baseline (face mesh; not trained on engagement data)", "kind": "frame",
         "baseline": True, "affect": False,
         "labels": ["attentive", "partly attentive", "distracted", "looking away"],
         "engine": "litert-facemesh", "device": "cpu"}


def frames_with_faces(faces: int, size: tuple[int, int], count: int = 8) -> list[bytes]:
    """`count` real-face BGR frames of `size` (the benchmark videos' renderer, 640x480, scaled), as capture
    sends them."""
    import cv2

    from tools.sample_video import astronaut_face, render_frame

    face = astronaut_face()
    return [np.ascontiguousarray(cv2.resize(render_frame(i / 2.0, 0.0, faces, face), size)).tobytes()
            for i in range(count)]


def prediction(student: int, seq: int) -> dict:
    """One face's prediction as the attention baseline sends it (signals with its per-frame `now`)."""
    rng = np.random.default_rng(seq * 97 + student)
    probs = rng.dirichlet([4, 2, 1, 0.5]).tolist()
    signals = {"yaw": round(float(rng.normal(0, 8)), 4), "pitch": round(float(rng.normal(10, 5)), 4),
               "roll": 3.4, "eye_openness": round(float(rng.uniform(0.2, 0.4)), 4), "mesh_confidence": 1.0,
               "frames": seq + 1, "score": round(float(rng.uniform(0, 1)), 4), "reason": "pitch",
               "now": {"yaw": -2.1, "pitch": 11.0, "eye_openness": 0.31}}
    return {"student": student, "box": [40 + 70 * (student % 8), 60 + 70 * (student // 8) % 400, 104, 104],
            "conf": 0.92, "probs": probs, "level": int(np.argmax(probs)), "signals": signals}


def plan(streams: int, tree: Path, work: Path, prefix: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Each service's environment, and this process's endpoints."""
    p = free_ports(9)
    ep = {name: f"tcp://127.0.0.1:{port}" for name, port in
          zip(("predictions", "updates", "acks", "preview", "live"), p[:5], strict=True)}
    ids = ",".join(f"s{i}" for i in range(streams))
    common = {"REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), "REDIS_PREFIX": prefix,
              "STREAMS": ids if streams > 1 else "", "STREAM_ID": "s0", "CLASS_ID": "bench-downstream",
              "LOG_LEVEL": "WARNING", "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1",
              "JOURNAL_DIR": str(work / "runs"), "REPORT_DIR": str(work / "reports"),
              "REPORT_FALLBACK_DIR": str(work / "fallback")}
    envs = {
        "aggregator": {**common, "METRICS_PORT": str(p[5]), "PREDICTIONS_IN": f"pull+bind:{ep['predictions']}",
                       "UPDATES_OUT": f"push+bind:{ep['updates']}", "ACKS_OUT": f"push+bind:{ep['acks']}"},
        "reporter": {**common, "METRICS_PORT": str(p[6]), "UPDATES_IN": f"pull+connect:{ep['updates']}",
                     "PREVIEW_IN": f"sub+bind:{ep['preview']}", "LIVE_OUT": f"pub+connect:{ep['live']}",
                     "HEADLESS": "1"},
        "web": {**common, "METRICS_PORT": str(p[7]), "LIVE_IN": f"sub+bind:{ep['live']}", "WEB_PORT": str(p[8])},
    }
    return envs, ep


# The service's main thread under cProfile with its CPU time as the clock: what its handler costs,
# not the wall time a loaded box adds (a sampling profiler charges a preempted thread to where it stood).
CPROFILED = """
import cProfile, sys, time
from engagement.cli import main
profile = cProfile.Profile(time.thread_time)
profile.enable()
try:
    code = main(sys.argv[2:])
finally:
    profile.disable()
    profile.dump_stats(sys.argv[1])
sys.exit(code)
"""


def start(envs: dict[str, dict[str, str]], tree: Path, work: Path, cprofile: str = "") -> dict[str, subprocess.Popen]:
    procs = {}
    for name in ("web", "reporter", "aggregator"):  # consumers first, as the launcher does
        env = {**os.environ, **envs[name]}
        log = (work / f"{name}.log").open("w")
        command = ["-c", CPROFILED, str(work / f"{name}.prof")] if name == cprofile else ["-m", "engagement.cli"]
        procs[name] = subprocess.Popen([sys.executable, *command, name], env=env, cwd=tree,
                                       stdout=log, stderr=subprocess.STDOUT)
    for name, proc in procs.items():
        url = f"http://127.0.0.1:{envs[name]['METRICS_PORT']}/healthz"
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: see {work / (name + '.log')}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not healthy in 60 s")
            time.sleep(0.1)
    return procs


def cpu_seconds(proc: psutil.Process) -> tuple[float, float]:
    """(the process's CPU seconds, its main thread's: the service's loop, without ZeroMQ's and HTTP's threads)."""
    t = proc.cpu_times()
    main = next((th.user_time + th.system_time for th in proc.threads() if th.id == proc.pid), 0.0)
    return t.user + t.system, main


class Browser(threading.Thread):
    """A live page's two streams (events and video), read and thrown away."""

    def __init__(self, base: str, path: str) -> None:
        super().__init__(daemon=True)
        self.url = base + path
        self.bytes = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import httpx

        try:
            with httpx.stream("GET", self.url, timeout=None) as r:
                for chunk in r.iter_bytes():
                    self.bytes += len(chunk)
                    if self.stop.is_set():
                        return
        except httpx.HTTPError:
            return


@dataclass
class _Feed:
    """The benchmark's ends of the links: frames and predictions in, acks back."""

    preview: zmq.Socket
    predictions: zmq.Socket
    acks: zmq.Socket
    acked: int = 0
    sent: int = 0

    @classmethod
    def open(cls, ep: dict[str, str]) -> _Feed:
        ctx = zmq.Context.instance()
        preview = ctx.socket(zmq.PUB)
        preview.setsockopt(zmq.SNDHWM, 1000)
        preview.connect(ep["preview"])
        predictions = ctx.socket(zmq.PUSH)
        predictions.setsockopt(zmq.SNDHWM, 100000)
        predictions.connect(ep["predictions"])
        acks = ctx.socket(zmq.PULL)
        acks.connect(ep["acks"])
        return cls(preview, predictions, acks)

    def take_acks(self, wait: float) -> None:
        if self.acks.poll(int(wait * 1000) + 1):
            while self.acks.poll(0):
                self.acks.recv_multipart()
                self.acked += 1

    def close(self) -> None:
        for sock in (self.preview, self.predictions, self.acks):
            sock.close(linger=0)


def _send_frame(feed: _Feed, args: argparse.Namespace, session: str, stream: str, n: int,
                image: np.ndarray, size: tuple[int, ...]) -> None:
    period = 1.0 / args.fps
    now = time.time()
    frame = make_header("frame", session, stream, n, now, {"capture": now}, width=size[0], height=size[1],
                        encoding="bgr", t_media=n * period, source="bench")
    feed.preview.send_multipart(encode(frame, image))
    preds = [prediction(s + 1, n) for s in range(args.faces)]
    faces = [{"student": p["student"], "box": p["box"], "conf": p["conf"]} for p in preds]
    header = make_header("predictions", session, stream, n, now, {"capture": now, "inference": now},
                         model=MODEL, predictions=preds, faces=faces, t_media=n * period)
    feed.predictions.send_multipart(encode(header))
    feed.sent += 1


def _start_spy(args: argparse.Namespace, pid: int, work: Path, seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
                             "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(work / "spy.txt"),
                             "--duration", str(int(seconds))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _feed_class(feed: _Feed, args: argparse.Namespace, session: str, images: list[np.ndarray],
                size: tuple[int, ...], ps: dict[str, psutil.Process], on_warm: Callable[[], None]
                ) -> tuple[dict[str, tuple[float, float]], float]:
    """Every stream's frames at the class's pace; the services' CPU and the time when warm-up ended."""
    period = 1.0 / args.fps
    total_frames, warmup_frames = int(args.seconds * args.fps), int(args.warmup * args.fps)
    started = time.monotonic()
    before: dict[str, tuple[float, float]] = {}
    t0 = started
    for n in range(total_frames):
        if n == warmup_frames:
            before = {name: cpu_seconds(p) for name, p in ps.items()}
            t0 = time.monotonic()
            on_warm()
        for i in range(args.streams):
            due = started + n * period + i * period / args.streams
            while (wait := due - time.monotonic()) > 0:
                feed.take_acks(wait)
            _send_frame(feed, args, session, f"s{i}", n, images[(n + i) % len(images)], size)
    return before, t0


def _drain(feed: _Feed) -> None:
    """Every ack awaited (each frame stored), and the reporter's and the web's last messages."""
    deadline = time.monotonic() + 30
    while feed.acked < feed.sent and time.monotonic() < deadline:
        feed.take_acks(0.2)
    time.sleep(0.5)


def _end_class(feed: _Feed, args: argparse.Namespace, session: str, work: Path) -> Path:
    """Each stream's eos; the report's path (written when the reporter is done)."""
    total_frames = int(args.seconds * args.fps)
    for i in range(args.streams):
        eos = make_header("eos", session, f"s{i}", total_frames, time.time(), {"capture": time.time()},
                          reason="end_of_file")
        feed.predictions.send_multipart(encode(eos))
    return work / "reports" / f"{session}.json"


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], browsers: list[Browser]) -> None:
    for b in browsers:
        b.stop.set()
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _profiles(args: argparse.Namespace, work: Path) -> dict:
    out: dict = {}
    if args.spy and (work / "spy.txt").exists():
        from bench.profile import top_functions

        out["spy"] = [(f, round(s, 1), round(i, 1)) for f, s, i in top_functions(work / "spy.txt", 25)]
    if args.cprofile and (work / f"{args.cprofile}.prof").exists():
        import io
        import pstats

        text = io.StringIO()
        pstats.Stats(str(work / f"{args.cprofile}.prof"), stream=text).sort_stats("tottime").print_stats(30)
        out["cprofile"] = text.getvalue()
    return out


def run(args: argparse.Namespace) -> dict:
    tree = Path(args.tree).resolve()
    work = Path(tempfile.mkdtemp(prefix="bench-downstream-"))
    prefix = f"bench-ds-{uuid.uuid4().hex[:10]}"
    session = f"bench-{uuid.uuid4().hex[:8]}"
    envs, ep = plan(args.streams, tree, work, prefix)
    size = tuple(int(v) for v in args.size.split("x"))
    images = frames_with_faces(args.faces, (size[0], size[1]))
    feed = _Feed.open(ep)
    procs = start(envs, tree, work, args.cprofile or "")
    ps = {name: psutil.Process(proc.pid) for name, proc in procs.items()}
    time.sleep(1.0)  # links connected (PUB/SUB drops what it sends before)
    base = f"http://127.0.0.1:{envs['web']['WEB_PORT']}"
    browsers = [b for _ in range(args.browsers)
                for b in (Browser(base, "/api/live/events"), Browser(base, "/api/live/video.mjpg"))]
    for b in browsers:
        b.start()
    spies: list[subprocess.Popen[bytes]] = []
    measured_seconds = args.seconds - args.warmup

    def on_warm() -> None:
        if args.spy:
            spies.append(_start_spy(args, procs[args.spy].pid, work, measured_seconds))

    try:
        before, t0 = _feed_class(feed, args, session, images, size, ps, on_warm)
        _drain(feed)
        after = {name: cpu_seconds(p) for name, p in ps.items()}  # before the eos: the report is not a frame's
        wall = time.monotonic() - t0
        report = _end_class(feed, args, session, work)
        deadline = time.monotonic() + 60
        while not report.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for spy in spies:
            spy.wait(60)
    finally:
        _stop_all(procs, browsers)
        feed.close()
        _drop_keys(envs["aggregator"]["REDIS_URL"], prefix)
    measured_frames = (int(args.seconds * args.fps) - int(args.warmup * args.fps)) * args.streams
    figures = {name: {"cpu_ms_per_frame": round(1000 * (after[name][0] - before[name][0]) / measured_frames, 3),
                      "main_thread_ms_per_frame": round(1000 * (after[name][1] - before[name][1]) / measured_frames, 3),
                      "core_percent": round(100 * (after[name][0] - before[name][0]) / wall, 2)} for name in SERVICES}
    return {"tree": str(tree), "streams": args.streams, "faces": args.faces, "fps": args.fps, "size": args.size,
            "frames": measured_frames, "acked": feed.acked, "sent": feed.sent, "report": report.exists(),
            "load": list(os.getloadavg()), "services": figures, "work": str(work), **_profiles(args, work)}


def _drop_keys(url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i:i + 500])


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.downstream", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=29)
    parser.add_argument("--faces", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--size", default="640x480", help="preview frames' WIDTHxHEIGHT (a 1920x1080 call gallery)")
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS,
                        help="seconds not measured (first calls; the reporter's text stamps, one a frame)")
    parser.add_argument("--browsers", type=int, default=0, help="live pages reading the events and the video")
    parser.add_argument("--spy", choices=SERVICES)
    parser.add_argument("--cprofile", choices=SERVICES, help="that service's main thread under cProfile (CPU time)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = run(args)
    load = " ".join(f"{x:.2f}" for x in result["load"])
    print(f"{args.streams} streams x {args.fps:g} FPS, {args.faces} face(s) on {args.size}, "
          f"{result['frames']} frames measured "
          f"({result['acked']}/{result['sent']} acked, report {'written' if result['report'] else 'MISSING'}); "
          f"load {load}; tree {result['tree']}")
    for name, f in result["services"].items():
        print(f"  {name:10s} {f['cpu_ms_per_frame']:7.3f} ms CPU a frame ({f['main_thread_ms_per_frame']:.3f} its main "
              f"thread)  {f['core_percent']:6.2f} % of a core")
    for f, s, i in result.get("spy", []):
        print(f"    {s:5.1f} self {i:5.1f} incl  {f}")
    if result.get("cprofile"):
        print(result["cprofile"])
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
