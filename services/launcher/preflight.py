"""The start-up checks of a run (those of `engagement check`: source, folders, Redis, model,
ports), with one source check per stream of the class, so a class that cannot work fails
before anything starts: one line per failed check and exit code 2. What a check passed with a
warning (a Redis that keeps nothing over a restart, say) is said in the log once the run has
claimed its class, as the table of `engagement check` says it."""

from __future__ import annotations

import logging
import sys

from services.launcher import checks
from services.launcher.launch_settings import LaunchSettings
from services.launcher.plan import RUN_SERVICES
from shared.ops.config import METRICS_PORTS

EXIT_CHECK_FAILED = 2
log = logging.getLogger("launcher")


def check_context(settings: LaunchSettings, session_given: bool = False) -> checks.Context:
    """What the checks read: the run's settings, a private Redis when REDIS_URL is empty, the fixed ports."""
    fixed = {n: METRICS_PORTS[n] for n in RUN_SERVICES} if settings.launcher.fixed_ports else {}
    return checks.Context(settings, private_redis=not settings.aggregator.redis_url,
                          extra={"fixed_ports": fixed, "session_given": session_given})


def run_all_checks(settings: LaunchSettings, session_given: bool) -> list[checks.Result]:
    """Every check once, and the source check for every source of the class (named by its stream)."""
    ctx = check_context(settings, session_given)
    if len(settings.sources) <= 1:
        return checks.run_checks(ctx)
    listed = [(name, fn) for name, fn in checks.CHECKS if name != "source"]
    listed += [checks.source_check_of(stream.id, stream.source) for stream in settings.sources]
    return checks.run_checks(ctx, checks=listed)


def preflight(settings: LaunchSettings, session_given: bool) -> tuple[int, list[checks.Result]]:
    """(0, the checks passed with a warning), or print each failed check's one line and return (2, [])."""
    results = run_all_checks(settings, session_given)
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"engagement run: {r.line()}", file=sys.stderr, flush=True)
    return (EXIT_CHECK_FAILED, []) if failed else (0, [r for r in results if r.warning])


def say_warnings(warned: list[checks.Result]) -> None:
    """Once the class is the run's (its id claimed): a run refused at its claim says one line, no more."""
    for r in warned:
        log.warning("check %s: %s", r.name, r.detail)
