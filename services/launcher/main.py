"""`engagement run`: the whole pipeline as separate OS processes on loopback.

Starts the services downstream-first (each healthy before the next), capture last; when
the source ends (capture exits cleanly after sending end-of-stream) or on Ctrl-C/SIGTERM
(capture is told to stop, and its end-of-stream drains through the pipeline), it waits for
the reporter's report, stops every process upstream-first and prints the report's paths.
Every setting not given as a flag here is read by the services from the environment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from services.launcher.ports import free_ports, is_free
from services.launcher.private_redis import PrivateRedis
from services.launcher.supervisor import Child, Supervisor
from shared.config import METRICS_PORTS, REPO_ROOT
from shared.links import LINKS as ALL_LINKS
from shared.logs import setup_logging
from shared.service import EXIT_GAVE_UP

log = logging.getLogger("launcher")

PIPELINE = ["capture", "facedetect", "sequencer", "inference", "aggregator", "reporter"]
START_ORDER = list(reversed(PIPELINE))  # consumers first, so nothing waits on a missing peer
# Every link of shared/links.py, the acks too (Redis writes acknowledged: inference resends the rest).
LINKS = {link.name: link for link in ALL_LINKS if {link.producer, link.consumer} <= set(PIPELINE)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engagement run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="video file, camera index or RTSP/HTTP URL")
    p.add_argument("--model", default=os.environ.get("MODEL", "baseline"),
                   help="'baseline' (face-mesh attention) or a model bundle directory")
    p.add_argument("--session-id", default=os.environ.get("SESSION_ID", ""))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""),
                   help="Redis for the totals (default: a private redis-server on a free port)")
    p.add_argument("--report-dir", default=os.environ.get("REPORT_DIR", str(REPO_ROOT / "reports")))
    p.add_argument("--fixed-ports", action="store_true",
                   help="use the configured metrics ports (for a Prometheus that scrapes them) "
                        "instead of free ones")
    p.add_argument("--report-timeout", type=float, default=300.0,
                   help="seconds to wait for the report once the source has ended")
    p.add_argument("--max-restarts", type=int, default=5, help="restarts per service before giving up")
    return p


def plan_environment(args: argparse.Namespace, redis_url: str) -> dict[str, dict[str, str]]:
    """Per-service environment: links on free loopback ports, metrics ports, shared settings."""
    base = dict(os.environ)
    sequence_length = base.get("SEQUENCE_LENGTH")
    if not sequence_length:
        from shared.card_info import sequence_length_for

        sequence_length = str(sequence_length_for(args.model))
    base.update({"SESSION_ID": args.session_id, "SOURCE": args.source, "MODEL": args.model,
                 "REDIS_URL": redis_url, "REPORT_DIR": args.report_dir,
                 "SEQUENCE_LENGTH": sequence_length, "PYTHONUNBUFFERED": "1"})
    link_ports = dict(zip(LINKS, free_ports(len(LINKS)), strict=True))
    if args.fixed_ports and all(is_free(p) for p in METRICS_PORTS.values()):
        metrics_ports = {name: METRICS_PORTS[name] for name in PIPELINE}
    else:
        metrics_ports = dict(zip(PIPELINE, free_ports(len(PIPELINE)), strict=True))
    envs = {}
    for name in PIPELINE:
        env = dict(base, METRICS_PORT=str(metrics_ports[name]))
        for link in LINKS.values():
            if name == link.producer:
                env[link.out_setting] = link.out_spec(port=link_ports[link.name])
            if name == link.consumer:
                env[link.in_setting] = link.in_spec(port=link_ports[link.name])
        envs[name] = env
    return envs


def _report_paths(report_dir: str, session: str) -> tuple[Path, Path]:
    return Path(report_dir) / f"{session}.txt", Path(report_dir) / f"{session}.json"


def run(args: argparse.Namespace,
        adjust_env: Callable[[dict[str, dict[str, str]]], None] | None = None) -> int:
    """Run one session; `adjust_env` may rewire the planned per-service environments."""
    if not args.session_id:
        stream = os.environ.get("STREAM_ID", "cam0")
        args.session_id = f"{stream}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    private = None
    redis_url = args.redis_url
    if not redis_url:
        private = PrivateRedis()
        redis_url = private.url
        log.info("no REDIS_URL: started a private redis-server at %s", redis_url)
    envs = plan_environment(args, redis_url)
    if adjust_env:
        adjust_env(envs)
    children = [Child(name, envs[name], int(envs[name]["METRICS_PORT"])) for name in PIPELINE]
    supervisor = Supervisor(children, args.max_restarts)
    stop_requested = []

    def on_signal(signum: int, _frame: object) -> None:
        if stop_requested:  # a second Ctrl-C: stop at once
            log.warning("second stop request: stopping every service now")
            raise KeyboardInterrupt
        stop_requested.append(signum)
        log.info("stop requested: ending the session (the report is still written)")
        supervisor.signal("capture", signal.SIGTERM)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    txt, js = _report_paths(args.report_dir, args.session_id)
    started = time.monotonic()
    code = 1
    try:
        log.info("session %s: starting %s", args.session_id, ", ".join(START_ORDER))
        supervisor.start(START_ORDER)
        ports = {c.name: c.metrics_port for c in children}
        log.info("all services up in %.1f s; metrics ports %s", time.monotonic() - started, ports)
        source_ended_at = None
        while True:
            finished = supervisor.poll()
            if "capture" in finished and source_ended_at is None:
                source_ended_at = time.monotonic()
                log.info("source ended; waiting for the report")
            if stop_requested and source_ended_at is None and not supervisor.children["capture"].alive():
                source_ended_at = time.monotonic()
            if txt.exists() and js.exists() and source_ended_at is not None:
                code = 0
                break
            if source_ended_at is not None and time.monotonic() - source_ended_at > args.report_timeout:
                log.error("no report after %.0f s", args.report_timeout)
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        log.error("%s", exc)
    finally:
        supervisor.stop(PIPELINE)
        if private:
            private.stop()
    elapsed = time.monotonic() - started
    if code == 0 and EXIT_GAVE_UP in supervisor.children["capture"].exit_codes:
        log.error("the source %s could not be read: the report covers what was captured (maybe nothing)",
                  args.source)
        code = EXIT_GAVE_UP
    if txt.exists() and js.exists():
        _print_summary(js, elapsed)
        print(f"report: {txt}")
        print(f"report: {js}")
    return code


def _print_summary(js: Path, elapsed: float) -> None:
    try:
        report = json.loads(js.read_text())
        frames = report.get("totals", {}).get("frames", 0)
        print(f"session {report.get('session')}: {frames} frames in {elapsed:.1f} s "
              f"({frames / elapsed:.2f} frames/s including start-up)")
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("launcher", os.environ.get("LOG_LEVEL", "INFO"))
    return run(args)

