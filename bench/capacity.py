"""`engagement bench-capacity`: how many 2 FPS classes this box watches, beside what its cores allow.

For each case (one-face webcams, eight-face rooms, 5x5 and 7x7 1920x1080 call galleries, all
real faces), the largest number of streams one `engagement run` (services/launcher) holds at
2 FPS, paced like live cameras (REALTIME=1: a frame the pipeline cannot take is dropped and
counted), with zero frames dropped or missing and capture -> prediction p99 under --p99-ms,
found by search: 1, 2, 4, ... until a count fails (or --max-streams), then bisection between
the last that held and the first that did not; the count found is tried again until it has held
--confirm times (2), a failure there taking the search a count down.

Beside it, the limit the kernels allow, timed (CPU time) in the same run on the case's own
video: decode (what capture does per frame), detection as facedetect does it (a gallery's
tiles found every frame; faces searched every DETECT_EVERY frames and followed between: on a
plain frame the detector, on a gallery the whole-frame res10 pass and a search of each tile
it missed) and the attention baseline's model (face mesh + levels) on the faces found, each
single-threaded; a stream costs 2 x that a second, so limit = cores the services may use /
(2 x kernel seconds a frame). The ratio capacity / limit
is what the processes, the hops and the copies cost. CPU and resident memory per stream come
from the run at the capacity (all services' CPU and RSS over the streams).

A figure, not a test: on a shared machine the load average and the busiest other processes are
written beside every run, and the figures are labelled as taken under that load.

    engagement bench-capacity [--cases webcam room8 gallery5 gallery7] [--seconds 15] [--max-streams 32] [--confirm 2]
                              [--out bench/capacity_results.json] [--results-md bench/RESULTS.md]
                              [--model baseline|BUNDLE_DIR] [--engine auto|onnx|tflite|keras]
    engagement bench-capacity --quick      a smoke run: webcams, 3 s, at most 2 streams

With --model a bundle (a trained model) the same table is made for it: its kernel is the
bundle's predictor on the faces found (one call a frame; a sequence model's call takes each
face's whole sequence), run by --engine as the inference service runs it with ENGINE. That is
how a GPU box (a Jetson) gets its table: scripts/gpu-check.sh runs this with ENGINE=auto.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import psutil

from bench.arguments import out_refusal, quick_conflict
from bench.observe import MetricsScraper, ProcessSampler, UpdatesTap
from bench.pipeline import launch_observed, stage_latencies
from bench.stats import percentiles_ms
from shared.data.model_card import CARD_FILE
from shared.ops.command_parser import CommandParser

FPS = 2.0
WARMUP_FRAMES = 2  # per stream: the first frames pay for first calls, not in the latency figure
# The class's start, told apart: facedetect holds each new face's first frames until the tracker has
# decided who it is (services/facedetect/holdback.py, about 1 s), then releases them together, and
# the stages downstream catch up on that second with what CPU the streams leave them. Frames
# captured from this many seconds after the class's first frame are its steady state.
STEADY_AFTER_SECONDS = 5.0
RESULTS_BEGIN, RESULTS_END = "<!-- bench-capacity: begin -->", "<!-- bench-capacity: end -->"


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    faces: int
    size: tuple[int, int]
    grid: int = 0  # > 0: a grid x grid call gallery


CASES = {c.name: c for c in (
    Case("webcam", "one-face webcam, 640x480", 1, (640, 480)),
    Case("room8", "eight-face room, 640x480", 8, (640, 480)),
    Case("gallery5", "5x5 call gallery, 1920x1080", 25, (1920, 1080), grid=5),
    Case("gallery7", "7x7 call gallery, 1920x1080", 49, (1920, 1080), grid=7),
)}


def make_case_video(case: Case, path: Path, frames: int) -> Path:
    """`frames` frames of the case at 2 frames per second of media (capture keeps every one)."""
    if case.grid:
        from tools.gallery_video import _faces, everyone, render

        people, faces = everyone(case.grid), _faces()
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, case.size)
        if not writer.isOpened():
            raise RuntimeError(f"cannot write {path}")
        try:
            for i in range(frames):  # everyone there throughout, facing the camera
                writer.write(render(people, i / max(1, frames), case.size, faces))
        finally:
            writer.release()
        return path
    from bench.workload import make_faces_video
    return make_faces_video(path, case.faces, frames, FPS)


# --- the kernels' limit ---------------------------------------------------------------------------

class _Detection:
    """facedetect's detection for one stream, without the service around it (see the module's doc)."""

    def __init__(self, gallery: bool) -> None:
        from services.facedetect.follow import Follower
        from shared.ops.config import SERVICES
        from shared.vision.detectors import make_detector, with_slices

        defaults = {s.env: s.default for s in SERVICES["facedetect"]}
        self.gallery = gallery
        self.detector = with_slices(make_detector(defaults["DETECTOR"], float(defaults["CONFIDENCE"])))
        self.frame_detector = make_detector("dnn", float(defaults["CONFIDENCE"]))
        self.follower = Follower(int(defaults["DETECT_EVERY"]))
        self.margin = float(defaults["CROP_MARGIN"])
        self.crop = int(defaults["CROP_SIZE"])

    def boxes(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        if self.gallery:
            from services.facedetect.gallery import find_tiles

            tiles = find_tiles(image)  # every frame, as facedetect: the grid's tiles come and go
            if tiles:
                return self._follow(("bench", "gallery"), image, lambda: self._gallery(image, tiles))
        return self._follow(("bench", "plain"), image, lambda: self.detector.detect(image))

    def _follow(self, key: tuple[str, str], image: np.ndarray, search: Callable[[], list]) -> list:
        """Searched every DETECT_EVERY frames (or when a face is lost), followed in between."""
        found, _ = self.follower.follow(key, image)
        if found is None:
            found = search()
            self.follower.detected(key, image, found)
        return [d.box for d in found]

    def _gallery(self, image: np.ndarray, tiles: list) -> list:
        from shared.vision.detectors import Detection

        best: list = [None] * len(tiles)
        for det in self.frame_detector.detect(image):
            cx, cy = det.box[0] + det.box[2] / 2, det.box[1] + det.box[3] / 2
            for i, (x, y, w, h) in enumerate(tiles):
                if x <= cx < x + w and y <= cy < y + h:
                    best[i] = best[i] or det
                    break
        for i, (x, y, w, h) in enumerate(tiles):
            if best[i] is None:
                top = max(self.detector.detect(image[y:y + h, x:x + w], slices=False),
                          key=lambda d: d.confidence, default=None)
                if top is not None:
                    best[i] = Detection((top.box[0] + x, top.box[1] + y, top.box[2], top.box[3]), top.confidence)
        return [b for b in best if b is not None]


class _ModelKernel:
    """The model's work on one frame's crops: the baseline's, or a bundle's predictor (ENGINE)."""

    def __init__(self, model: str, engine: str) -> None:
        self.baseline = model == "baseline"
        if self.baseline:
            from services.inference.baseline import BaselinePredictor

            self.predictor = BaselinePredictor()
            self.length = 1
        else:
            from services.inference.bundle import load_predictor

            self.bundle = load_predictor(Path(model), engine=engine)
            self.length = max(1, self.bundle.card.sequence_length)

    @property
    def engine(self) -> str:
        return "baseline" if self.baseline else self.bundle.engine

    def run(self, crops: list[np.ndarray], t: float) -> None:
        batch = np.stack(crops)
        if self.baseline:
            [self.predictor.assess(s) for s in self.predictor.measure(batch)]
            return
        sequences = np.repeat(batch[:, None], self.length, axis=1)  # each face's sequence, this frame newest
        self.bundle.predict_students([("bench", "kernel", i) for i in range(len(crops))], sequences, t)


QUIET_BUSY = 0.25  # the share of the box's CPU under which the kernels are timed
QUIET_WAIT_SECONDS = 60.0


def wait_for_quiet(busy_below: float = QUIET_BUSY, seconds: float = QUIET_WAIT_SECONDS) -> float:
    """Until the box's CPU, over a second, is below `busy_below` of all cores (or `seconds` passed); the last
    share seen. A case's kernels were timed while the last case's class still went away (70 processes,
    load average 9.5): whatever else moves them (this VM's speed moves by a third within minutes), the
    processes of a trial should not, since a limit timed too slow flatters the ratio."""
    deadline = time.monotonic() + seconds
    while True:
        busy = psutil.cpu_percent(interval=1.0) / 100
        if busy < busy_below or time.monotonic() >= deadline:
            return busy


def time_kernels(case: Case, video: Path, frames: int = 16, model: str = "baseline", engine: str = "auto") -> dict:
    """CPU ms a frame of decode, detection (with crops) and the model on the faces found.

    Each kernel runs single-threaded in this thread, so its thread CPU time is its cost on one
    core whatever else the shared machine runs (wall time, given beside it, is what the load
    left of a core). The limit uses the CPU times: what the cores allow when the box is ours.
    """
    from shared.ops import cpu_budget
    from shared.vision.detectors import crop_face

    cv2.setNumThreads(1)  # one core a kernel: the limit divides the kernels over the cores
    cpu_budget.apply(litert=1)
    detection = _Detection(bool(case.grid))
    model_kernel = _ModelKernel(model, engine)
    cpu: dict[str, list[float]] = {"decode": [], "detection": [], "model": []}
    wall: dict[str, list[float]] = {k: [] for k in cpu}
    faces = []
    cap = cv2.VideoCapture(str(video))
    try:
        for i in range(frames + WARMUP_FRAMES):
            marks = [(time.thread_time(), time.perf_counter())]
            ok, image = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = cap.read()
                if not ok:
                    raise RuntimeError(f"cannot read {video}")
            marks.append((time.thread_time(), time.perf_counter()))
            boxes = detection.boxes(image)
            crops = [crop_face(image, b, detection.crop, detection.margin) for b in boxes]
            marks.append((time.thread_time(), time.perf_counter()))
            if crops:
                model_kernel.run(crops, i / FPS)
            marks.append((time.thread_time(), time.perf_counter()))
            if i < WARMUP_FRAMES:
                continue
            for k, kernel in enumerate(cpu):
                cpu[kernel].append(marks[k + 1][0] - marks[k][0])
                wall[kernel].append(marks[k + 1][1] - marks[k][1])
            faces.append(len(crops))
    finally:
        cap.release()
    cores = len(os.sched_getaffinity(0))
    ms = {k: float(np.mean(v)) * 1000 for k, v in cpu.items()}  # means: detection every DETECT_EVERY frames
    per_frame = sum(ms.values())
    found = float(np.mean(faces))
    return {"decode_ms": round(ms["decode"], 2), "detection_ms": round(ms["detection"], 2),
            "model_ms": round(ms["model"], 2), "faces_found": round(found, 2),
            "model_ms_per_face": round(ms["model"] / max(1.0, found), 2),
            "frame_ms": round(per_frame, 2), "frames_timed": len(faces), "cores": cores, "engine": model_kernel.engine,
            "wall_ms": {k: round(float(np.mean(v)) * 1000, 2) for k, v in wall.items()},
            "limit_streams": round(cores / (FPS * per_frame / 1000), 1)}


def kernels_median(timings: list[dict]) -> dict:
    """The kernels timed before every trial and after the last: the median timing's figures (by its frame's
    time; of an even number the faster of the middle two, so a slow moment cannot flatter the ratio), every
    timing's frame kept (frame_ms_timings, in the order taken), the limit from the median.

    This VM's cores change speed by a third within a minute (the room's kernels: 29.0, 39.6, 32.4 ms a
    frame a minute apart): a limit from one or two timings sampled that drift, one from every trial's
    moment follows it."""
    if not timings:
        raise ValueError("no kernel timing")
    median = sorted(timings, key=lambda k: k["frame_ms"])[(len(timings) - 1) // 2]
    return {**median, "frame_ms_timings": [k["frame_ms"] for k in timings],
            "frames_timed": sum(k["frames_timed"] for k in timings)}


# --- one trial: n streams of the case through `engagement run` -----------------------------------

def machine_state(exclude: set[int] | None = None, top: int = 5) -> dict:
    """Load average and the busiest processes that are not this benchmark's (others' work on a shared box)."""
    mine = exclude or set()
    procs = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        if p.pid in mine:
            continue
        try:
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            continue
    time.sleep(0.5)
    busy = []
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
        except psutil.Error:
            continue
        if cpu >= 5:
            cmd = " ".join((p.info.get("cmdline") or [p.info.get("name") or "?"])[:4])
            busy.append((cpu, cmd[:90]))
    busy.sort(reverse=True)
    return {"load_average": [round(x, 2) for x in os.getloadavg()],
            "busiest_others": [{"cpu_percent": round(c, 1), "command": cmd} for c, cmd in busy[:top]]}


def _own_pids() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(c.pid for c in me.children(recursive=True))}


def run_trial(case: Case, video: Path, n: int, frames: int, work: Path, p99_ms: float,
              model: str = "baseline", engine: str = "auto") -> dict:
    """n streams of `video` in one class to its report; whether it held (no drop, p99 under the bound)."""
    session = f"bench-capacity-{case.name}-{n}-{uuid.uuid4().hex[:6]}"
    before = machine_state(_own_pids())
    scraper = MetricsScraper()
    tap = UpdatesTap(on_eos=scraper.scrape)  # last counters before the launcher stops the services
    env = {"REALTIME": "1", "FPS": f"{FPS:g}", "LOG_LEVEL": "WARNING", "ENGINE": engine}

    def adjust(envs: dict[str, dict[str, str]]) -> None:
        for e in envs.values():
            e.update(env)

    paths = []
    for i in range(n):  # a file per camera: each capture opens its own
        path = work / f"{case.name}-cam{i + 1}.avi"
        if not path.exists():
            os.link(video, path)
        paths.append(path)
    sources = [arg for i, p in enumerate(paths) for arg in ("--source", f"s{i + 1}={p}")]
    # Once a second, no library lookup: the trial's watchers share the box with the services they measure.
    sampler = ProcessSampler(interval=1.0, tensorflow=False)
    try:
        code, started = launch_observed(
            [*sources, "--model", model, "--session-id", session, "--report-dir", str(work / "reports"),
             "--report-timeout", "120"], adjust, scraper, tap)
    finally:
        sampler.close()
    records = sorted(tap.records, key=lambda r: r.arrived)
    # seq counts per stream: the first frames of every stream are left out.
    latency = [r.stamps["inference"] - r.t_capture for r in records
               if r.seq >= WARMUP_FRAMES and "inference" in r.stamps]
    expected = n * frames
    drops = sum(v for k, v in scraper.breakdown("engagement_frames_dropped_total").items() if not k.endswith(" gap"))
    lat = percentiles_ms(latency)
    window = (records[min(len(records) - 1, WARMUP_FRAMES * n)].arrived, records[-1].arrived) if records else (0, 0)
    procs = sampler.summary(*window)
    held = (code == 0 and len(records) == expected and drops == 0 and tap.repeated == 0
            and lat["p99"] is not None and lat["p99"] < p99_ms)
    return {"streams": n, "held": held, "exit_code": code, "session": session,
            "frames_expected": expected, "frames_through": len(records), "drops_counted": drops,
            # What never reached a prediction, counted or not: a capture that exits at its stream's end
            # takes its own drop count with it before the last scrape.
            "frames_missing": expected - len(records),
            "updates_repeated": tap.repeated, "capture_to_prediction_ms": lat,
            "class_start": class_start(records, p99_ms),
            # Each stage's stamp minus the previous one's (queueing + hop + work): where the delay gathers.
            "stage_ms": {k: {"p50": v["p50"], "p99": v["p99"]} for k, v in
                         stage_latencies([r for r in records if r.seq >= WARMUP_FRAMES], 0).items()
                         # the stages the class ran (a frame model runs no sequencer)
                         if k in ("capture", "facedetect", "sequencer", "inference") and v["p50"] is not None},
            "faces_per_frame": round(sum(r.faces for r in records) / len(records), 2) if records else 0,
            **services_use(procs, n),
            "machine_before": before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "wall_seconds": round(time.time() - started, 1)}


def services_use(procs: dict[str, dict], streams: int) -> dict:
    """The services' CPU and memory in all and a stream (Redis aside), and each process's."""
    services = [p for name, p in procs.items() if name != "redis"]
    out: dict = {"processes": {k: {"cpu_percent": v["cpu_percent"], "rss_mb": v["rss_mb"], "pss_mb": v["pss_mb"]}
                               for k, v in procs.items()}}
    for key in ("cpu_percent", "rss_mb", "pss_mb"):
        total = sum(p[key] or 0 for p in services)  # a CPU share is None for a process sampled once
        out[f"{key}_all"], out[f"{key}_per_stream"] = round(total, 1), round(total / streams, 1)
    return out


def class_start(records: list, p99_ms: float) -> dict:
    """How the class's start weighs in the latency: the last frame over the bound (seconds from the
    class's first frame to its capture; 0 = none) and the p99 of the steady state (frames captured
    STEADY_AFTER_SECONDS on). Each stream's first WARMUP_FRAMES are left out, as in the p99."""
    timed = [(r.t_capture, r.stamps["inference"] - r.t_capture) for r in records
             if r.seq >= WARMUP_FRAMES and "inference" in r.stamps]
    if not timed:
        return {"late_until_s": None, "steady_p99_ms": None, "steady_frames": 0}
    first = min(r.t_capture for r in records)
    late = [t for t, latency in timed if latency * 1000 >= p99_ms]
    steady = [latency for t, latency in timed if t - first >= STEADY_AFTER_SECONDS]
    return {"late_until_s": round(max(late) - first, 2) if late else 0.0,
            "steady_p99_ms": percentiles_ms(steady)["p99"], "steady_frames": len(steady)}


def search(trial: Callable[[int], dict], max_streams: int, confirm: int = 2) -> tuple[int, list[dict]]:
    """The largest n in [0, max_streams] that held in every trial of it: 1, 2, 4, ... up to a failure, then
    bisection, each count tried once; then the count found is tried until it has held `confirm` times, and one
    that fails there takes the search a count down (tried, and confirmed, in turn). A count that held once is
    not what a box holds when its speed moves by a third within minutes: the same services held 81 webcams in one
    run and failed 73 in the next, 25 minutes later (bench/RESULTS.md). Assumes holding is monotonic in n."""
    runs: dict[int, list[dict]] = {}

    def held(n: int) -> bool:
        if n not in runs:
            runs[n] = [trial(n)]
        return all(r["held"] for r in runs[n])

    good, bad = 0, None
    n = 1
    while n <= max_streams:
        if not held(n):
            bad = n
            break
        good = n
        n *= 2
    if bad is None:
        bad = max_streams + 1
        if good < max_streams and not held(max_streams):
            bad = max_streams
        elif good < max_streams:
            good = max_streams
    while bad - good > 1:
        mid = (good + bad) // 2
        if held(mid):
            good = mid
        else:
            bad = mid
    while good > 0:
        while held(good) and len(runs[good]) < confirm:
            runs[good].append(trial(good))
        if held(good):
            break
        good -= 1
    return good, [r for k in sorted(runs) for r in runs[k]]


def _settle(case: Case) -> None:
    busy = wait_for_quiet()
    if busy >= QUIET_BUSY:
        print(f"{case.name}: the box stayed {busy:.0%} busy for {QUIET_WAIT_SECONDS:g} s: kernels timed anyway "
              "(their limit may be low)", flush=True)


def measure_case(case: Case, seconds: float, max_streams: int, p99_ms: float, work: Path,
                 model: str = "baseline", engine: str = "auto", confirm: int = 2) -> dict:
    frames = max(4, round(seconds * FPS))
    video = make_case_video(case, work / f"{case.name}.avi", frames)
    timings: list[dict] = []

    def timed() -> dict:
        """The kernels timed now, once the box has settled (the last trial's class going away)."""
        _settle(case)
        timings.append(time_kernels(case, video, model=model, engine=engine))
        return timings[-1]

    def trial(n: int) -> dict:
        kernels = timed()  # before every trial: the limit follows the machine's speed through the search
        if len(timings) == 1:
            print(f"{case.name}: kernels {kernels['frame_ms']} ms a frame ({kernels['faces_found']} faces found) -> "
                  f"limit {kernels['limit_streams']} streams on {kernels['cores']} cores (timed before every "
                  "trial and after the last)", flush=True)
        r = run_trial(case, video, n, frames, work, p99_ms, model, engine)
        r["kernels_frame_ms"] = kernels["frame_ms"]  # timed just before it
        start = r["class_start"]
        print(f"  {n} stream(s): {'held' if r['held'] else 'did not hold'}: {r['frames_through']}/"
              f"{r['frames_expected']} through ({r['frames_missing']} missing, {r['drops_counted']:g} of them "
              f"counted as dropped while the services ran), p99 "
              f"{r['capture_to_prediction_ms']['p99']} ms (from {STEADY_AFTER_SECONDS:g} s on "
              f"{start['steady_p99_ms']} ms; last frame over {p99_ms:g} ms at {start['late_until_s']} s), "
              f"kernels just before {kernels['frame_ms']} ms a frame, load {r['machine_before']['load_average']}",
              flush=True)
        return r

    capacity, runs = search(trial, max_streams, confirm)
    after = timed()
    kernels = kernels_median(timings)
    print(f"{case.name}: kernels after the trials {after['frame_ms']} ms a frame; the median of "
          f"{len(timings)} timings {kernels['frame_ms']} -> limit {kernels['limit_streams']} streams", flush=True)
    at = next((r for r in runs if r["streams"] == capacity), None)
    loads = [r["machine_before"]["load_average"][0] for r in runs]
    return {"case": case.name, "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_1min": [min(loads), max(loads)], "what": case.what, "faces": case.faces, "size": list(case.size),
            "frames_per_stream": frames, "capacity": capacity, "max_streams": max_streams,
            "capped": capacity == max_streams,
            "kernels": kernels, "limit_streams": kernels["limit_streams"],
            "ratio": round(capacity / kernels["limit_streams"], 3) if kernels["limit_streams"] else None,
            "at_capacity": {**{k: at[k] for k in ("cpu_percent_per_stream", "rss_mb_per_stream", "pss_mb_per_stream",
                                                  "cpu_percent_all", "rss_mb_all", "pss_mb_all",
                                                  "capture_to_prediction_ms", "faces_per_frame")},
                            **services_cost(at, at["kernels_frame_ms"])} if at else None,
            "runs": runs}


def services_cost(run: dict, kernel_frame_ms: float) -> dict:
    """The services' CPU ms a frame in a trial (all of them, over its frames a second), and the kernels' share of
    it: what the processes, hops and copies add to the kernels, told apart from the headroom the latency needs
    (a pipeline as cheap as its kernels, 1.0, still holds fewer streams than the limit if its queues are long)."""
    ms = run["cpu_percent_all"] * 10 / (FPS * run["streams"])  # % of a core = 10 ms a second
    return {"services_ms_per_frame": round(ms, 2), "kernels_share": round(kernel_frame_ms / ms, 3) if ms else None}


# --- output ---------------------------------------------------------------------------------------

def table(cases: list[dict], p99_ms: float) -> str:
    lines = [f"| case | streams held (2 FPS, 0 dropped, p99 < {p99_ms:g} ms) | kernel limit | ratio | "
             "kernels ms a frame: decode + detection + model (faces) of the median timing; the frame's timings | "
             "p99 ms at capacity | the services' CPU ms a frame at capacity (the kernels' share) | CPU % per stream | "
             "RSS MB per stream | PSS MB per stream (shared pages split among the processes sharing them) | "
             f"the first count that did not hold: p99 ms, p99 ms from {STEADY_AFTER_SECONDS:g} s "
             "on, last frame over the bound (s into the class) | trials | measured (load 1 min) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in cases:
        k, at = c["kernels"], c["at_capacity"] or {}
        held = f"{c['capacity']}{' (the cap)' if c['capped'] else ''}"
        trials = ", ".join(f"{r['streams']}{'' if r['held'] else '✗'}" for r in c["runs"])
        lines.append(f"| {c['what']} | {held} | {c['limit_streams']} | {c['ratio']} | {k['decode_ms']} + "
                     f"{k['detection_ms']} + {k['model_ms']} ({k['faces_found']}); {_drift(k)} | "
                     f"{(at.get('capture_to_prediction_ms') or {}).get('p99', '-')} | {_services(at)} | "
                     f"{at.get('cpu_percent_per_stream', '-')} | {at.get('rss_mb_per_stream', '-')} | "
                     f"{at.get('pss_mb_per_stream', '-')} | "
                     f"{_first_failed(c['runs'])} | {trials} | "
                     f"{c['measured'][11:]} ({'-'.join(f'{x:g}' for x in c['load_1min'])}) |")
    return "\n".join(lines)


def _drift(kernels: dict) -> str:
    """The frame's kernels as timed before every trial and after the last (older results: before and after the
    trials, or once)."""
    if "frame_ms_timings" in kernels:
        t = kernels["frame_ms_timings"]
        return f"{len(t)} timings, {min(t)}-{max(t)}"
    if "frame_ms_after" in kernels:
        return f"{kernels['frame_ms_before']}, {kernels['frame_ms_after']}"
    return "timed once"


def _services(at: dict) -> str:
    if "services_ms_per_frame" not in at:
        return "-"
    return f"{at['services_ms_per_frame']} ({at['kernels_share']})"


def _first_failed(runs: list[dict]) -> str:
    """The smallest count that did not hold, and whether its start or its steady state failed."""
    failed = [r for r in runs if not r["held"]]
    if not failed:
        return "-"
    r = min(failed, key=lambda run: run["streams"])
    start = r.get("class_start") or {}
    return (f"{r['streams']}: {r['capture_to_prediction_ms']['p99']}, {start.get('steady_p99_ms', '-')}, "
            f"{start.get('late_until_s', '-')}")


def markdown(results: dict, command: str) -> str:
    m = results["machine"]
    loads = [r["machine_before"]["load_average"][0] for c in results["cases"] for r in c["runs"]]
    others = {o["command"] for c in results["cases"] for r in c["runs"] for o in r["machine_before"]["busiest_others"]}
    under = (f"taken with a load average (1 min) of {min(loads):g}-{max(loads):g} on {m['cpus']} CPUs before the "
             f"trials" if loads else "no trial ran")
    # The load before a trial counts the last trial's processes winding down: other work is what
    # makes these figures lower bounds, and only the busiest other processes say whether there was any.
    context = ("the machine is shared by several engineers, so these are lower bounds of a quiet box"
               if others else "no other busy process was seen before any trial (the load is the trials' own)")
    return "\n".join([
        RESULTS_BEGIN,
        f"## Capacity: 2 FPS streams one box holds ({results['finished']}, `{command}`)",
        "",
        f"Figures {under}; {context} "
        f"(the kernels were timed under the same load). Busiest other processes seen: "
        f"{'; '.join(sorted(others)[:6]) or 'none'}.",
        f"Each trial: one `engagement run` of n real-face videos of {results['inputs']['seconds']:g} s, "
        f"REALTIME=1 FPS=2, {_model_words(results['inputs'])}; held = every frame through, none dropped, "
        "capture -> prediction p99 under the bound (first 2 frames of each stream left out of the latency); a count "
        f"holds when it held in each of its trials, the count found tried {_confirm_words(results['inputs'])}. "
        "Limit = cores / (2 x kernels a frame); kernels single-threaded, mean CPU ms a frame (thread CPU time: "
        "what a core does, not what the load left of it), timed before every trial and after the last, the limit "
        "from the median timing (this VM's cores change speed by a third within a minute). The services' CPU a "
        "frame at the capacity (all services, Redis aside, over the frames a second), and the kernels' share of "
        "it (timed just before that trial): what the processes and hops add to the kernels, apart from the "
        "headroom the latency bound needs. CPU and RSS per stream: all services at the capacity, "
        "over the streams. The first count that did not hold says whether its start or its steady state failed: "
        f"its p99 from {STEADY_AFTER_SECONDS:g} s into the class on, and when the last frame over the bound was "
        "captured (facedetect holds each new face's first second until the tracker has decided who it is, then "
        "the stages downstream catch up on it with the CPU the streams leave them).",
        "",
        table(results["cases"], results["inputs"]["p99_ms"]),
        RESULTS_END,
    ])


def _confirm_words(inputs: dict) -> str:
    n = int(inputs.get("confirm", 1))  # results from before --confirm: each count once
    return "once" if n == 1 else f"{n} times"


def _model_words(inputs: dict) -> str:
    model = inputs.get("model", "baseline")
    return "attention baseline" if model == "baseline" else f"the bundle {Path(model).name} (ENGINE={inputs['engine']})"


def write_results_md(path: Path, section: str) -> None:
    """Put the section after the title of RESULTS.md, replacing the previous one."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# engagement bench: results on this machine\n"
    if RESULTS_BEGIN in text and RESULTS_END in text:
        head, _, rest = text.partition(RESULTS_BEGIN)
        _, _, tail = rest.partition(RESULTS_END)
        text = head + section + tail
    else:
        title, nl, body = text.partition("\n")
        text = f"{title}{nl}\n{section}\n{body}"
    path.write_text(text, encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="engagement bench-capacity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--seconds", type=float, default=15.0, help="length of each stream's video (2 frames a second)")
    p.add_argument("--max-streams", type=int, default=32, help="the search stops here")
    p.add_argument("--confirm", type=int, default=2, help="trials the count found must hold in (1: each count "
                   "tried once); one that fails takes the search a count down")
    p.add_argument("--p99-ms", type=float, default=500.0, help="capture -> prediction p99 bound")
    p.add_argument("--out", type=Path, default=Path("capacity_results.json"))
    p.add_argument("--results-md", type=Path, default=None, help="also write the table into this RESULTS.md")
    p.add_argument("--merge", action="store_true", help="keep the cases of --out that this run does not measure "
                   "(re-measure one case, keep the table whole)")
    p.add_argument("--quick", action="store_true", help="a smoke run: webcams, 3 s, at most 2 streams")
    p.add_argument("--model", default="baseline", help="baseline, or a bundle folder (a trained model)")
    p.add_argument("--engine", default="auto", help="what runs a bundle (ENGINE): auto, onnx, tflite, keras")
    return p


def _refusal(args: argparse.Namespace) -> str | None:
    """What makes these arguments unusable, found before the first trial (a run takes up to half an hour, and
    its figures were lost to a traceback when --out could not be written at its end); None: usable."""
    if args.seconds <= 0 or args.p99_ms <= 0 or args.max_streams < 1 or args.confirm < 1:
        return "--seconds and --p99-ms must be positive, --max-streams and --confirm at least 1"
    if args.model != "baseline" and not (Path(args.model) / CARD_FILE).is_file():
        return f"--model {args.model}: not a bundle folder (no model_card.json in it)"
    if refusal := out_refusal(out=args.out, results_md=args.results_md):
        return refusal
    if args.merge and args.out.is_file():
        try:
            json.loads(args.out.read_text())["cases"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"--merge: {args.out} holds no results to keep ({exc.__class__.__name__}: {exc})"
    return None


class _Stopped(Exception):
    """SIGTERM: raised where the bench is, so that it unwinds (the trials' temporary folder is removed)."""


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise _Stopped


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    args = build_parser().parse_args(argv)
    if refusal := quick_conflict(argv, ("--cases", "--seconds", "--max-streams", "--confirm")):
        print(f"engagement bench-capacity: {refusal}", file=sys.stderr)
        return 2
    if args.quick:
        args.cases, args.seconds, args.max_streams, args.confirm = ["webcam"], 3.0, 2, 1
    if refusal := _refusal(args):
        print(f"engagement bench-capacity: {refusal}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return _run(args, argv)
    except (KeyboardInterrupt, _Stopped) as exc:
        # The launcher stops its services on the same signals; what was measured so far is not written.
        how = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped (SIGTERM)"
        print(f"engagement bench-capacity: {how}: no figures written", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    results: dict = {"machine": {"cpus": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)),
                                 "python": platform.python_version(), "at_start": machine_state(_own_pids())},
                     "inputs": {"seconds": args.seconds, "fps": FPS, "p99_ms": args.p99_ms,
                                "max_streams": args.max_streams, "confirm": args.confirm, "model": args.model,
                                "engine": args.engine,
                                "pacing": "REALTIME=1 FPS=2"},
                     "cases": []}
    with tempfile.TemporaryDirectory(prefix="engagement-capacity-") as tmp:
        for name in args.cases:
            results["cases"].append(measure_case(CASES[name], args.seconds, args.max_streams, args.p99_ms, Path(tmp),
                                                 args.model, args.engine, args.confirm))
    if args.merge and args.out.is_file():
        kept = [c for c in json.loads(args.out.read_text())["cases"] if c["case"] not in args.cases]
        order = list(CASES)
        results["cases"] = sorted(kept + results["cases"], key=lambda c: order.index(c["case"]))
    results["machine"]["at_end"] = machine_state(_own_pids())
    results["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "engagement bench-capacity " + " ".join(argv)
    section = markdown(results, command.strip())
    print("\n" + section)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"figures: {args.out}")
    if args.results_md:
        write_results_md(args.results_md, section)
        print(f"table written into {args.results_md}")
    return 0 if all(r["exit_code"] == 0 for c in results["cases"] for r in c["runs"]) else 1
