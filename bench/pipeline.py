"""One pipeline run as `engagement run` does it (services/launcher), observed from outside.

The launcher is called in this process with `adjust_env` putting an UpdatesTap on the
updates link; a ProcessSampler watches its children and a MetricsScraper reads their
Prometheus endpoints. Returns frames/s, per-stage and end-to-end latency from the header
stamps, drops, per-process CPU and memory, and the model's cost per face.
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.observe import MetricsScraper, ProcessSampler, UpdatesTap
from bench.stats import percentiles_ms, rate
from services.launcher import main as launcher
from services.launcher.stopping import StopRequests
from shared.ops.ports import free_ports

STAGES = ("capture", "facedetect", "sequencer", "inference", "aggregator")
WARMUP_FRAMES = 3  # the first frames pay for first calls (tracing, allocations): not in the figures


def stage_latencies(records: list, skip: int) -> dict[str, dict]:
    """Per stage: its stamp minus the previous stage's (queueing + hop + work); end to end."""
    per: dict[str, list[float]] = {s: [] for s in STAGES}
    per["capture_to_prediction"] = []
    per["capture_to_update"] = []
    for r in records[skip:]:
        prev = r.t_capture
        for stage in STAGES:
            t = r.stamps.get(stage)
            if t is None:  # not there (a frame model's class runs no sequencer) or not reached
                continue
            per[stage].append(t - prev)
            prev = t
        if "inference" in r.stamps:
            per["capture_to_prediction"].append(r.stamps["inference"] - r.t_capture)
        if "aggregator" in r.stamps:
            per["capture_to_update"].append(r.stamps["aggregator"] - r.t_capture)
    return {k: percentiles_ms(v) for k, v in per.items()}


# Compose's Prometheus scrapes every 5 s (compose/prometheus/prometheus.yml); a faster scrape would
# bill the services for the benchmark's watching (each capture of 30 served a page a second).
SCRAPE_SECONDS = 5.0


def launch_observed(argv: list[str], adjust: Callable[[dict[str, dict[str, str]]], None],
                    scraper: MetricsScraper, tap: UpdatesTap) -> tuple[int, float]:
    """`engagement run argv` in this process, to its report: `tap` on the updates link, `scraper`
    reading each service's metrics every SCRAPE_SECONDS (one service at a time), `adjust` changing the
    planned environments.

    The page never gets the well-known port: on a shared box another class (or the previous run,
    still closing) may hold it between the launcher's check and the page's bind. Returns the
    launcher's exit code and the wall time it started; the launcher's summary lines are swallowed. A stop the
    user asked for (Ctrl-C, SIGTERM) ends the class as it ends `engagement run`'s, then raises KeyboardInterrupt:
    a benchmark of many classes stops, where it went on with the next one.
    """
    def rewire(envs: dict[str, dict[str, str]]) -> None:
        tap.rewire(envs)
        if "web" in envs:
            envs["web"]["WEB_PORT"] = str(free_ports(1)[0])
        adjust(envs)  # after the port: the web benchmark reads it here
        scraper.remember_ports(envs)

    args = launcher.build_parser().parse_args(argv)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    scraping = threading.Event()

    def scrape_loop() -> None:  # each service every SCRAPE_SECONDS, one at a time
        while not scraping.wait(SCRAPE_SECONDS / max(1, len(scraper.ports))):
            scraper.scrape_next()

    scrape_thread = threading.Thread(target=scrape_loop, daemon=True)
    scrape_thread.start()
    started = time.time()
    stops = StopRequests()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = launcher.run(args, adjust_env=rewire, stops=stops)
    finally:
        scraping.set()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        tap.close()
        scrape_thread.join(3)
    if stops.stopping.is_set():  # Ctrl-C or SIGTERM ended this class: the user wants the benchmark stopped
        raise KeyboardInterrupt
    return code, started


def run_pipeline(source: Path, model: str, realtime: bool, work: Path, engine: str = "auto",
                 extra_env: dict[str, str] | None = None, label: str = "", soak_warmup: float | None = None,
                 on_env: Callable[[dict[str, dict[str, str]]], None] | None = None,
                 service_env: dict[str, dict[str, str]] | None = None) -> dict:
    """Run one session to its report; return the figures (soak_warmup set: memory growth after it).

    `extra_env` goes to every service, `service_env` to the services it names (after extra_env).
    `on_env` sees the planned per-service environments (the web benchmark reads the page's port).
    """
    session = f"bench-{label or 'run'}-{uuid.uuid4().hex[:8]}"
    scraper = MetricsScraper()
    tap = UpdatesTap(on_eos=scraper.scrape)  # last counters before the launcher stops the services
    env = {"REALTIME": "1" if realtime else "0", "FPS": "2", "ENGINE": engine, "LOG_LEVEL": "WARNING",
           **(extra_env or {})}

    def adjust(envs: dict[str, dict[str, str]]) -> None:
        for name, e in envs.items():
            e.update(env)
            e.update((service_env or {}).get(name, {}))
        if on_env:
            on_env(envs)

    sampler = ProcessSampler(interval=0.1)  # capture of a short, unthrottled file lives ~1 s
    try:
        code, started = launch_observed(
            ["--source", str(source), "--model", model, "--session-id", session,
             "--report-dir", str(work / "reports"), "--report-timeout", "120"], adjust, scraper, tap)
    finally:
        sampler.close()
    figures, window = _figures(tap, scraper, sampler, started)
    result = {"label": label, "model": "baseline" if model == "baseline" else Path(model).name, "engine": engine,
              "realtime": realtime, "exit_code": code, "session": session, **figures}
    if soak_warmup is not None:
        # Memory from when the pipeline is warm (first frames through, then the warm-up) to the end.
        result["memory"] = sampler.growth(window[0], window[1], soak_warmup)
    return result


def _figures(tap: UpdatesTap, scraper: MetricsScraper, sampler: ProcessSampler,
             started: float) -> tuple[dict[str, Any], tuple[float, float]]:
    """What one session measured (frames, drops, rates, latencies, the model's time, the processes),
    and the window it is measured over: from the first frames after the warm-up to the eos."""
    records = sorted(tap.records, key=lambda r: r.seq)
    arrivals = sorted(r.arrived for r in records)
    skip = min(WARMUP_FRAMES, max(0, len(records) - 2))
    window = (arrivals[skip], tap.eos_at or arrivals[-1]) if len(arrivals) > skip else (started, time.time())
    captured = tap.eos_seq if tap.eos_seq is not None else (records[-1].seq + 1 if records else 0)
    drops = scraper.breakdown("engagement_frames_dropped_total")
    faces = scraper.get("inference", "engagement_inference_faces_total") or 0
    model_seconds = scraper.get("inference", "engagement_inference_seconds_sum") or 0
    model_calls = scraper.get("inference", "engagement_inference_seconds_count") or 0
    return {
        "frames_captured": captured, "frames_through": len(records), "updates_repeated": tap.repeated,
        "frames_dropped": max(0, captured - len(records)),
        "first_missing_seqs": sorted(set(range(captured)) - {r.seq for r in records})[:10],
        # A frame capture drops (queue_full) is also a sequence gap for facedetect (gap): the
        # headline counts each dropped frame once, where it was dropped; the breakdown has both.
        "drops_counted": sum(v for k, v in drops.items() if not k.endswith(" gap")),
        "drops_by_service": drops,
        "rejected": scraper.total("engagement_messages_rejected_total"),
        "faces_per_frame": round(sum(r.faces for r in records) / len(records), 2) if records else 0,
        "fps": rate(arrivals, skip),
        "latency_ms": stage_latencies(records, skip),
        "model_ms_per_call": round(model_seconds / model_calls * 1000, 2) if model_calls else None,
        "model_ms_per_face": round(model_seconds / faces * 1000, 2) if faces else None,
        "processes": sampler.summary(*window),
        "wall_seconds": round(time.time() - started, 1),
    }, window
