"""The start-up checks of a run (those of `engagement check`: source, folders, Redis, model,
ports), with one source check per stream of the class, so a class that cannot work fails
before anything starts: one line per failed check and exit code 2."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from services.launcher.plan import RUN_SERVICES
from services.launcher.streams import Stream
from shared import checks
from shared.config import METRICS_PORTS

EXIT_CHECK_FAILED = 2


def check_context(values: dict[str, Any], session_given: bool = False) -> checks.Context:
    """What the checks read: the run's settings, a private Redis when REDIS_URL is empty, the fixed ports."""
    fixed = {n: METRICS_PORTS[n] for n in RUN_SERVICES} if values.get("fixed_ports") else {}
    return checks.Context(values, private_redis=not values.get("redis_url"),
                          extra={"fixed_ports": fixed, "session_given": session_given})


def run_all_checks(values: dict[str, Any], session_given: bool) -> list[checks.Result]:
    """Every check once, and the source check for every source of the class (named by its stream)."""
    streams: list[Stream] = values.get("sources") or []
    if len(streams) <= 1:
        return checks.run_checks(check_context(values, session_given))
    listed = [(name, fn) for name, fn in checks.CHECKS if name != "source"]
    for stream in streams:
        listed.append((f"source {stream.id}", _source_check(values, stream)))
    return checks.run_checks(check_context(values, session_given), checks=listed)


def _source_check(values: dict[str, Any], stream: Stream) -> checks.CheckFn:
    source_fn = dict(checks.CHECKS)["source"]

    def one(_ctx: checks.Context) -> checks.Result:
        result = source_fn(checks.Context(dict(values, source=stream.source)))
        return dataclasses.replace(result, name=f"source {stream.id}")
    return one


def preflight(values: dict[str, Any], session_given: bool) -> int:
    """0, or print each failed check's one line and return 2."""
    failed = [r for r in run_all_checks(values, session_given) if not r.ok]
    for r in failed:
        print(f"engagement run: {r.line()}", file=sys.stderr, flush=True)
    return EXIT_CHECK_FAILED if failed else 0
