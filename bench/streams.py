"""`engagement bench-streams`: 1, 2, 3, 4 camera-like streams of real faces in one class.

Each run is one `engagement run --source s1=... --source s2=...` (services/launcher) on this
machine: every stream a 640x480 class video with real faces (tools/sample_video.py), paced at
2 FPS like a live camera (REALTIME=1), and again unthrottled: every frame of the 30 FPS video
(FPS=0), each capture as fast as the pipeline takes its frames, which measures the most the
pipeline sustains and its latency when saturated. An UpdatesTap on the aggregator -> reporter link records every
frame's stamps: frames/s through the pipeline (all streams together, and per stream) and
capture -> prediction latency p50/p99; inference's metrics give faces and streams per model
call (cross-stream batching). Prints a table and writes JSON. A figure, not a test: on a shared
machine say the load average next to the numbers (it is in the JSON and the printout).

    engagement bench-streams [--streams 1 2 3 4] [--seconds 20] [--faces 2] [--out streams-results.json]
    engagement bench-streams --quick        a smoke run: 2 streams, 3 s
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.arguments import out_refusal, quick_conflict
from bench.observe import MetricsScraper, UpdatesTap
from bench.pipeline import launch_observed
from bench.stats import percentiles_ms, rate
from shared.ops.command_parser import CommandParser
from tools.sample_video import make_sample_video

WARMUP_FRAMES = 3  # per run: the first frames pay for first calls, not in the figures
MODES = ("2fps", "unthrottled")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="engagement bench-streams", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 3, 4], help="simultaneous streams per run")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each stream's video")
    p.add_argument("--faces", type=int, default=2, help="real faces in each stream")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--out", type=Path, default=Path("streams-results.json"))
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 streams, 3 s of video")
    return p


def run_streams(videos: list[str], paced: bool, work: Path) -> dict:
    """One class of len(videos) streams to its report; its figures."""
    n = len(videos)
    session = f"bench-streams-{n}-{uuid.uuid4().hex[:8]}"
    scraper = MetricsScraper()
    tap = UpdatesTap(on_eos=scraper.scrape)  # last counters before the launcher stops the services
    env = {"REALTIME": "1" if paced else "0", "FPS": "2" if paced else "0", "LOG_LEVEL": "WARNING"}

    def adjust(envs: dict[str, dict[str, str]]) -> None:
        for e in envs.values():
            e.update(env)

    sources = [arg for i, video in enumerate(videos) for arg in ("--source", f"s{i + 1}={video}")]
    code, started = launch_observed(
        [*sources, "--model", "baseline", "--session-id", session, "--report-dir", str(work / "reports"),
         "--report-timeout", "120"], adjust, scraper, tap)
    records = sorted(tap.records, key=lambda r: r.arrived)
    skip = min(WARMUP_FRAMES * n, max(0, len(records) - 2))
    arrivals = [r.arrived for r in records]
    latency = [r.stamps["inference"] - r.t_capture for r in records[skip:] if "inference" in r.stamps]
    calls = scraper.get("inference", "engagement_inference_batch_size_count") or 0
    faces = scraper.get("inference", "engagement_inference_batch_size_sum") or 0
    streams_sum = scraper.get("inference", "engagement_inference_streams_per_call_sum") or 0
    fps = rate(arrivals, skip)
    return {
        "streams": n, "mode": "2fps" if paced else "unthrottled", "exit_code": code, "session": session,
        "frames_through": len(records), "updates_repeated": tap.repeated,
        "fps": fps, "fps_per_stream": round(fps / n, 3) if fps else None,
        "capture_to_prediction_ms": percentiles_ms(latency),
        "faces_per_frame": round(sum(r.faces for r in records) / len(records), 2) if records else 0,
        "model_calls": int(calls), "faces_per_call": round(faces / calls, 2) if calls else None,
        "streams_per_call": round(streams_sum / calls, 2) if calls else None,
        "drops_counted": sum(v for k, v in scraper.breakdown("engagement_frames_dropped_total").items()
                             if not k.endswith(" gap")),
        "wall_seconds": round(time.time() - started, 1),
    }


def table(runs: list[dict]) -> str:
    lines = ["| streams | pacing | frames/s (all) | frames/s per stream | capture -> prediction p50 ms | p99 ms "
             "| faces per model call | streams per call | drops |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        lat = r["capture_to_prediction_ms"]
        lines.append(f"| {r['streams']} | {r['mode']} | {r['fps']} | {r['fps_per_stream']} | {lat['p50']} | "
                     f"{lat['p99']} | {r['faces_per_call']} | {r['streams_per_call']} | {r['drops_counted']:g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if refusal := quick_conflict(list(sys.argv[1:] if argv is None else argv), ("--streams", "--seconds")):
        parser.error(refusal)
    if args.quick:
        args.streams, args.seconds = [2], 3.0
    if min(args.streams) < 1 or args.seconds <= 0 or args.faces < 0:
        parser.error("--streams must be at least 1 each, --seconds positive, --faces at least 0")
    if refusal := out_refusal(out=args.out):
        parser.error(refusal)
    logging.basicConfig(level=logging.WARNING)
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
               "inputs": {"seconds": args.seconds, "faces": args.faces, "video_fps": 30, "size": [640, 480],
                          "model": "baseline", "2fps": "REALTIME=1 FPS=2",
                          "unthrottled": "REALTIME=0 FPS=0 (every frame)"}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="engagement-streams-") as tmp:
        work = Path(tmp)
        video = make_sample_video(work / "class.avi", seconds=args.seconds, faces=args.faces)
        videos = []
        for i in range(max(args.streams)):  # a file per camera: each capture opens its own
            path = work / f"camera{i + 1}.avi"
            os.link(video["path"], path)
            videos.append(str(path))
        for mode in args.modes:
            for n in args.streams:
                run = run_streams(videos[:n], mode == "2fps", work)
                results["runs"].append(run)
                print(f"{n} stream(s), {mode}: {run['fps']} frames/s, capture -> prediction "
                      f"{run['capture_to_prediction_ms']}", flush=True)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    m = results["machine"]
    print(f"\n{args.faces} real faces per stream, 640x480, attention baseline, {args.seconds:g} s per stream; "
          f"{m['cpus']} CPUs, load average {m['load_average_at_start']} at start, {m['load_average_at_end']} at end")
    print(table(results["runs"]))
    args.out.write_text(json.dumps(results, indent=1))
    print(f"figures: {args.out}")
    return 0 if all(r["exit_code"] == 0 for r in results["runs"]) else 1
