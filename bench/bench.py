"""`engagement bench`: the pipeline against the reference system's single-process loop.

In one run, on this machine and the same inputs (640x480 videos with 1 and 8 real faces in
every frame, the reference-style classifier bundle, and the attention baseline):

  1. the pipeline, every service its own process as `engagement run` starts them, paced at
     2 FPS (REALTIME=1) and unthrottled, with 1 and 8 faces a frame;
  2. two single-process loops: the reference script as it was (predict per face) and the
     best single-process version (model called directly, all faces in one batch);
  3. the bus's cost per hop (raw 640x480 frame, tcp and ipc), the inference engines
     compared, and memory over a soak with a deliberately slow consumer;
  4. every face detector: ms a frame and recall on real faces (bench/detectors.py), and the
     attention baseline's practical limit (decode + detection + face mesh in one loop);
  5. with --budget-sweep, the pipeline under several CPU budgets (shared/ops/cpu_budget.py).

--only runs chosen parts alone (e.g. `--only sweep`, or `--only pipeline --runs bundle_8_2fps`
for one case); the tables and targets of the parts left out are left out too.

The issue's targets are printed beside the last results (--last, default bench/results.json).

Prints markdown tables and writes every figure as JSON (--out). Figures, not tests: the
smoke test (tests/perf/test_bench_smoke.py) only checks that a --quick run writes them all.

    engagement bench [--quick] [--out results.json] [--seconds 60] [--soak-seconds 600]
    engagement bench --only sweep [--sweep-runs bundle_8_unthrottled,bundle_8_2fps]
    engagement bench --only pipeline --runs bundle_8_2fps --repeat 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.arguments import out_refusal
from bench.bushop import measure_hop
from bench.observe import ProcessSampler
from bench.pipeline import run_pipeline
from bench.workload import VIDEO_FPS, make_faces_video, make_gallery_video
from shared.ops.command_parser import CommandParser
from shared.ops.config import REPO_ROOT

log = logging.getLogger("bench")
FACE_COUNTS = (1, 8)
GALLERY_FACES = 30  # a class in a video call's gallery, 1280x720
SOAK_VIDEO_FPS = 10.0  # the soak's source: 5x the reference rate, paced, so a slow consumer means drops
# The parts of a run, in the order they run; `sweep` only when asked (--budget-sweep or --only).
PARTS = ("bus", "detectors", "engines", "loops", "pipeline", "soak", "gallery", "sweep")
PIPELINE_RUNS = tuple(f"{m}_{n}_{rate}" for m in ("bundle", "baseline") for n in FACE_COUNTS
                      for rate in ("unthrottled", "2fps"))
SWEEP_RUNS = "bundle_8_unthrottled,baseline_1_unthrottled"


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return names


def _parts(text: str) -> list[str]:
    return _names(text, PARTS, "part")


def _runs(text: str) -> list[str]:
    return _names(text, PIPELINE_RUNS, "pipeline run")


def _budget_numbers(text: str) -> list[int]:
    return [int(n) for n in _names(text, tuple(str(i) for i in range(1, len(BUDGETS) + 1)), "budget")]


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="engagement bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CI-sized: a 96x96 model, a few seconds per part, a seconds-long soak")
    p.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON results file")
    p.add_argument("--seconds", type=float, help="length of the 2 FPS videos (default 60; quick 4)")
    p.add_argument("--unthrottled-frames", type=int,
                   help="frames of the videos the unthrottled pipeline runs read (default 1200; quick: as the "
                        "2 FPS videos): long enough for a steady rate, as the loops' --loop-seconds is")
    p.add_argument("--loop-seconds", type=float, help="time per single-process loop (default 30; quick 3)")
    p.add_argument("--soak-seconds", type=float, help="soak length (default 600; quick 6)")
    p.add_argument("--soak-slowdown", type=float, default=0.5, help="SLOWDOWN of inference in the soak (s/batch)")
    p.add_argument("--image-size", type=int, help="model input size (default 224; quick 96)")
    p.add_argument("--hops", type=int, help="frames in the bus micro-benchmark (default 2000; quick 200)")
    p.add_argument("--last", type=Path, default=REPO_ROOT / "bench" / "results.json",
                   help="earlier results printed beside this run's (the 'was' column)")
    p.add_argument("--budget-sweep", action="store_true",
                   help="also run the pipeline under several CPU budgets (--sweep-runs)")
    p.add_argument("--only", type=_parts, help=f"run only these parts, comma-separated ({', '.join(PARTS)})")
    p.add_argument("--runs", type=_runs, help="pipeline runs to make, comma-separated (default all: "
                   f"{', '.join(PIPELINE_RUNS)})")
    p.add_argument("--repeat", type=_at_least_one, default=1,
                   help="make each pipeline run this many times (labels #2, #3..)")
    p.add_argument("--sweep-runs", type=_runs, default=_runs(SWEEP_RUNS),
                   help=f"pipeline runs the budget sweep makes under each budget (default {SWEEP_RUNS})")
    p.add_argument("--budgets", type=_budget_numbers,
                   help="the sweep's budgets to try, by number in BUDGETS (1-based, comma-separated; default all)")
    p.add_argument("--engine", default="auto", help="ENGINE of the pipeline runs and loops when the engines part "
                   "is not run (with it: what auto chose there)")
    p.add_argument("--detector-frames", type=int, help="frames per sample set in the detector table "
                   "(default 40; quick 6)")
    p.add_argument("--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "engagement-bench",
                   help="videos, the bundle (kept between runs) and reports")
    return p


def _resolve(args: argparse.Namespace) -> None:
    quick = args.quick
    args.seconds = args.seconds or (4.0 if quick else 60.0)
    args.loop_seconds = args.loop_seconds or (3.0 if quick else 30.0)
    args.unthrottled_frames = args.unthrottled_frames or (int(args.seconds * VIDEO_FPS) if quick else 1200)
    args.soak_seconds = args.soak_seconds if args.soak_seconds is not None else (6.0 if quick else 600.0)
    args.image_size = args.image_size or (96 if quick else 224)
    args.hops = args.hops or (200 if quick else 2000)
    args.calls = 3 if quick else 10
    args.detector_frames = args.detector_frames or (6 if quick else 40)


def _python_module(module: str, *argv: str) -> None:
    """Run one of the benchmark's parts in its own process (TensorFlow stays out of this one)."""
    proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{module} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def machine() -> dict:
    freq = psutil.cpu_freq()
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": psutil.cpu_count(), "mhz": round(freq.current) if freq else None,
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "python": platform.python_version(),
            "kernel": platform.release(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def run_loop(video: Path, bundle: Path, mode: str, engine: str, seconds: float, work: Path) -> dict:
    out = work / f"loop-{mode}-{video.stem}.json"
    sampler = ProcessSampler()
    started = time.time()
    try:
        _python_module("bench.loops", "--video", str(video), "--bundle", str(bundle), "--mode", mode,
                       "--engine", engine, "--seconds", str(seconds), "--json", str(out))
    finally:
        sampler.close()
    result = json.loads(out.read_text())
    procs = sampler.summary(started, time.time())
    result["process"] = procs.get("loops", {})
    return result


# The budgets the sweep tries: a name, the environment of every service (empty = each service's
# CPU_BUDGETS and SMALL_BOX_AFFINITY entries) and of the services named. Chosen for 2 cores: how
# many threads the model call may take, and whether the light stages share one core while
# inference has the other. ANY_CPU undoes SMALL_BOX_AFFINITY's pinning.
ANY_CPU = {"CPU_AFFINITY": f"0-{(os.cpu_count() or 1) - 1}"}
INFERENCE_1 = {"TF_INTRA_OP_THREADS": "1", "LITERT_THREADS": "1", "ORT_THREADS": "1"}
INFERENCE_2 = {"TF_INTRA_OP_THREADS": "2", "LITERT_THREADS": "2", "ORT_THREADS": "2"}
LIGHT = ("capture", "facedetect", "sequencer", "aggregator", "reporter")
BUDGETS: list[tuple[str, dict[str, str], dict[str, dict[str, str]]]] = [
    ("library defaults (every pool on every core)",
     {"CV_THREADS": "-1", "LITERT_THREADS": "-1", "ORT_THREADS": "-1", "TF_INTRA_OP_THREADS": "-1",
      "TF_INTER_OP_THREADS": "-1", **ANY_CPU}, {}),
    ("CPU_BUDGETS (the defaults)", {}, {}),
    ("inference 1 thread", ANY_CPU, {"inference": INFERENCE_1}),
    ("inference 2 threads", ANY_CPU, {"inference": INFERENCE_2}),
    ("inference 2 threads on both cores, the rest on CPU 0", {},
     {"inference": {**INFERENCE_2, **ANY_CPU}, **{s: {"CPU_AFFINITY": "0"} for s in LIGHT}}),
    ("inference 1 thread on CPU 1, the rest on CPU 0", {},
     {"inference": {**INFERENCE_1, "CPU_AFFINITY": "1"}, **{s: {"CPU_AFFINITY": "0"} for s in LIGHT}}),
    ("inference 2 threads, facedetect on CPU 0", ANY_CPU,
     {"inference": INFERENCE_2, "facedetect": {"CPU_AFFINITY": "0"}}),
]
DETECTOR_NAMES_MEASURED = ["blazeface", "blazeface_short", "blazeface_full", "dnn", "haar"]


def detector_table(names: list[str], frames: int) -> dict:
    from bench.detectors import run

    return run(names, frames)


def _load_last(path: Path | None) -> dict | None:
    try:
        return json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        log.warning("no earlier results at %s: the 'was' column stays empty", path)
        return None


def _pipeline_case(label: str, videos: dict[str, dict[int, Path]], bundle: Path) -> tuple[Path, str, bool]:
    """'bundle_8_2fps' -> (the 8-face video for that rate, the bundle, paced)."""
    model_name, n, rate = label.split("_")
    return videos[rate][int(n)], (str(bundle) if model_name == "bundle" else "baseline"), rate == "2fps"


def budget_sweep(args: argparse.Namespace, videos: dict[str, dict[int, Path]], bundle: Path, work: Path,
                 engine: str) -> list:
    chosen = args.budgets or range(1, len(BUDGETS) + 1)
    rows = []
    for i in chosen:
        name, env, per_service = BUDGETS[i - 1]
        for run_label in args.sweep_runs:
            video, model, realtime = _pipeline_case(run_label, videos, bundle)
            log.info("pipeline budget %d (%s): %s, load average %s", i, name, run_label,
                     [round(x, 2) for x in os.getloadavg()])
            run = run_pipeline(video, model, realtime, work, engine=engine, label=f"budget-{i}", extra_env=env,
                               service_env=per_service)
            rows.append({"budget": name, "number": i, "env": env, "service_env": per_service, "run": run_label,
                         "fps": run["fps"], "latency_ms": run["latency_ms"],
                         "model_ms_per_face": run["model_ms_per_face"], "processes": run["processes"],
                         "load_average": [round(x, 2) for x in os.getloadavg()]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _resolve(args)
    if min(args.seconds, args.loop_seconds, args.unthrottled_frames, args.image_size, args.hops) <= 0 \
            or args.soak_seconds < 0:
        parser.error("--seconds, --loop-seconds, --unthrottled-frames, --image-size and --hops must be positive, "
                     "--soak-seconds at least 0")
    if refusal := out_refusal(out=args.out):
        parser.error(refusal)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    parts = set(args.only or [p for p in PARTS if p != "sweep" or args.budget_sweep])
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {
        "command": "engagement bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "parts": [p for p in PARTS if p in parts]}
    by_rate, bundle = _inputs(args, parts, work, results)
    _measure_parts(args, parts, results)
    engine = _measure_engines(args, parts, by_rate["2fps"], bundle, work, results)
    _measure_pipelines(args, parts, by_rate, bundle, work, engine, results)
    _write(args, results, started)
    return 0


def _inputs(args: argparse.Namespace, parts: set[str], work: Path,
            results: dict[str, Any]) -> tuple[dict[str, dict[int, Path]], Path]:
    """The videos of each rate (faces counts of FACE_COUNTS) and the reference bundle, made as needed."""
    frames = int(args.seconds * VIDEO_FPS)
    videos = {n: make_faces_video(work / f"faces{n}-{frames}.avi", n, frames) for n in FACE_COUNTS}
    # The unthrottled runs read a longer video: 120 frames went through in about a second, so
    # filling and draining the pipeline weighed on the rate the loops measure over 30 s.
    long_frames = args.unthrottled_frames
    long_videos = (videos if long_frames == frames else
                   {n: make_faces_video(work / f"faces{n}-{long_frames}.avi", n, long_frames) for n in FACE_COUNTS})
    results["inputs"] = {"videos": {str(n): str(v) for n, v in videos.items()}, "frames": frames,
                         "unthrottled_frames": long_frames, "video_fps": VIDEO_FPS, "size": "640x480"}
    bundle = work / f"reference-bundle-{args.image_size}"
    if parts & {"engines", "loops", "pipeline", "soak", "sweep"}:
        log.info("reference bundle %s", bundle)
        _python_module("bench.workload", "bundle", "--out", str(bundle), "--size", str(args.image_size))
    results["inputs"]["bundle"] = str(bundle)
    return {"2fps": videos, "unthrottled": long_videos}, bundle


def _measure_parts(args: argparse.Namespace, parts: set[str], results: dict[str, Any]) -> None:
    """The micro-benchmarks: a bus hop, and the face detectors on real faces."""
    if "bus" in parts:
        log.info("bus hop micro-benchmark (%d frames)", args.hops)
        results["bus"] = measure_hop(args.hops)
        results["bus"]["header_only"] = measure_hop(args.hops, frame=False)  # the floor: no payload at all
        results["bus"]["ipc"] = measure_hop(args.hops, transport="ipc")  # what the launcher uses
    if "detectors" in parts:
        log.info("face detectors on real faces (%d frames per sample set)", args.detector_frames)
        results["detectors"] = detector_table(DETECTOR_NAMES_MEASURED, args.detector_frames)


def _measure_engines(args: argparse.Namespace, parts: set[str], videos: dict[int, Path], bundle: Path, work: Path,
                     results: dict[str, Any]) -> str:
    """The inference engines on the bundle; the engine the pipeline runs with (ENGINE=auto's pick when measured)."""
    engine: str = args.engine
    if "engines" in parts:
        log.info("inference engines")
        engines_json = work / "engines.json"
        _python_module("bench.engines", "--bundle", str(bundle), "--video", str(videos[8]),
                       "--calls", str(args.calls), "--json", str(engines_json))
        results["engines"] = json.loads(engines_json.read_text())
        engine = results["engines"]["auto_choice"]  # what ENGINE=auto picks: the pipeline runs with it
    return engine


def _measure_pipelines(args: argparse.Namespace, parts: set[str], by_rate: dict[str, dict[int, Path]], bundle: Path,
                       work: Path, engine: str, results: dict[str, Any]) -> None:
    """The single-process loops, the pipeline runs, the soak, the gallery and the budget sweep."""
    if "loops" in parts:
        results["loops"] = {}
        for n in FACE_COUNTS:
            for mode in ("reference", "best", "baseline"):
                log.info("single-process loop %s, %d face(s)", mode, n)
                results["loops"][f"{mode}_{n}"] = run_loop(by_rate["unthrottled"][n], bundle, mode, engine,
                                                           args.loop_seconds, work)
    if "pipeline" in parts:
        results["pipeline"] = {}
        for label in args.runs or PIPELINE_RUNS:
            for i in range(1, args.repeat + 1):
                name = label if i == 1 else f"{label}#{i}"
                video, model, realtime = _pipeline_case(label, by_rate, bundle)
                log.info("pipeline %s", name)
                results["pipeline"][name] = run_pipeline(video, model, realtime, work, engine=engine, label=name)
    if "soak" in parts and args.soak_seconds > 0:
        results["soak"] = _soak(args, bundle, work, engine)
    if "gallery" in parts:
        frames = int(args.seconds * VIDEO_FPS)
        gallery = make_gallery_video(work / f"gallery{GALLERY_FACES}-{frames}.avi", GALLERY_FACES, frames)
        log.info("pipeline gallery: 1280x720, %d faces, baseline, unthrottled", GALLERY_FACES)
        results["pipeline_gallery"] = run_pipeline(gallery, "baseline", False, work, engine=engine,
                                                   label=f"gallery_{GALLERY_FACES}",
                                                   extra_env={"WIDTH": "1280", "HEIGHT": "720"})
    if "sweep" in parts:
        results["budget_sweep"] = budget_sweep(args, by_rate, bundle, work, engine)


def _soak(args: argparse.Namespace, bundle: Path, work: Path, engine: str) -> dict[str, Any]:
    """A long paced run with a slowed inference: the memory and queues over time."""
    soak_frames = int(args.soak_seconds * SOAK_VIDEO_FPS)
    soak_video = make_faces_video(work / f"soak8-{soak_frames}.avi", 8, soak_frames, SOAK_VIDEO_FPS)
    log.info("soak: %.0f s, source paced at %.0f FPS, inference SLOWDOWN %.2f s", args.soak_seconds,
             SOAK_VIDEO_FPS, args.soak_slowdown)
    warmup = min(60.0, args.soak_seconds / 10)
    soak: dict[str, Any] = run_pipeline(soak_video, str(bundle), True, work, engine=engine, label="soak",
                                        soak_warmup=warmup, extra_env={"FPS": "0", "SLOWDOWN": str(args.soak_slowdown)})
    soak.update({"seconds": args.soak_seconds, "warmup_seconds": warmup, "source_fps": SOAK_VIDEO_FPS,
                 "slowdown": args.soak_slowdown})
    return soak


def _write(args: argparse.Namespace, results: dict[str, Any], started: float) -> None:
    """Summaries and targets added; the JSON written and the tables printed."""
    results["summary"] = report.summarise(results)
    results["targets"] = report.targets(results)
    last = _load_last(args.last)
    results["issue_targets"] = report.issue_targets(results, last)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report.markdown(results))
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    sys.exit(main())
