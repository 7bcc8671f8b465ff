"""`engagement run`: the whole pipeline as separate OS processes on loopback.

Every setting of every pipeline service is a flag here (same name as the single service's),
an environment variable or a key of the YAML config file (`--config`). Before anything
starts, the settings are validated and the checks of `engagement check` run (source,
folders, Redis, model, ports); the first failure is one line and exit code 2.

Then it starts the services downstream-first (each healthy before the next), capture last (the
captures of several sources together: they play once every one is up, CAPTURES_UP_FILE);
when the source ends (capture exits cleanly after sending end-of-stream) or on Ctrl-C/SIGTERM
(capture is told to stop, and its end-of-stream drains through the pipeline), it waits for
the reporter's report, stops every process upstream-first and prints the report's paths. A
stop takes at most STOP_TIMEOUT (15 s): what is still running then is killed, and a report
not yet written is kept in Redis and written by the next `engagement run` in this folder.

The web service (the live page) starts first: it prints `live: http://127.0.0.1:PORT/` as
soon as the page is up (WEB_PORT, 8080, or a free port when that is taken; always on
loopback), and `--open` opens that page in the default browser. It is an output like the
reporter's files: it stops last, and the pipeline never waits for it.

Several sources (`--source A --source B`, services/launcher/streams.py) make one class: one
capture per source, each its own STREAM_ID (and FPS), all one SESSION_ID, STREAMS set for every
service; facedetect and the reporter read every capture. The report is awaited once every
capture has ended; a capture that gives up ends its stream only (the class goes on), and the
exit code (3) and the summary say which stream failed. So does one that crashes with no restarts
left: it sent no eos, so the launcher sends it for it (services/launcher/stand_in.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.launcher import checks
from services.launcher.bus_folder import BusFolderError, make_bus_folder
from services.launcher.claim import ClaimRefused, claim_session
from services.launcher.launch_settings import LaunchSettings, resolve_run, run_settings
from services.launcher.plan import RUN_SERVICES, plan_environment, services_of, use_run_folder_for_journal
from services.launcher.preflight import EXIT_CHECK_FAILED, preflight, run_all_checks, say_warnings
from services.launcher.private_redis import PrivateRedis
from services.launcher.recovery import recover_interrupted, remove_run, report_from_redis
from services.launcher.session_claim import SessionClaim
from services.launcher.stand_in import CRASHED_REASON, send_eos_for
from services.launcher.stopping import StartStopped, StopRequests
from services.launcher.store_watch import (
    STORE_GONE_SECONDS,
    StoreWatch,
    say_where_figures_came_from,
)
from services.launcher.streams import Stream
from services.launcher.summary import Outbox, ReportFolders, print_outbox_state, print_summary
from services.launcher.supervisor import Child, Supervisor
from shared.data.totals import safe_url
from shared.ops.command_parser import CommandParser
from shared.ops.config import (
    LAUNCHER,
    SERVICES,
    START_GATE_ENV,
    SettingError,
    add_flags,
    log_level_of_environment,
)
from shared.ops.logs import setup_logging
from shared.ops.service import EXIT_GAVE_UP

log = logging.getLogger("launcher")

SHORT_OPTIONS = {"--record": "-r", "--messaging": "-m"}  # the reference system's, as the reporter takes them


def build_parser(prog: str = "engagement run", description: str | None = None) -> argparse.ArgumentParser:
    p = CommandParser(
        prog=prog, description=description or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Each flag is also an environment variable (the name after 'env') and a key of the config file "
               "(lower case); flags win over the environment, the environment over the file, the file over "
               "the defaults. `engagement config --example` prints a file with every setting.")
    p.add_argument("--config", default=None, help="YAML config file (env CONFIG_FILE)")
    wanted = {s.env: s for s in run_settings()}
    placed: set[str] = set()
    groups: list[tuple[str, list[Any]]] = [("every service", [s for s in wanted.values()
                                                              if s.env in {c.env for c in _common()}])]
    groups += [(name, list(settings)) for name, settings in SERVICES.items() if name in RUN_SERVICES]
    groups.append(("the launcher", LAUNCHER))
    for title, settings in groups:
        fresh = [wanted[s.env] for s in settings if s.env in wanted and s.env not in placed]
        if not fresh:
            continue
        placed |= {s.env for s in fresh}
        add_flags(p.add_argument_group(f"{title} settings"), fresh)
    # Repeatable: every --source is a stream of the class (services/launcher/streams.py).
    source = next(a for a in p._actions if a.dest == "source")
    source.__class__ = argparse._AppendAction
    for long, short in SHORT_OPTIONS.items():  # the same dest, given alone = 1
        p.add_argument(short, dest=long[2:], nargs="?", const="1", default=None, help=f"same as {long}")
    return p


def _common() -> list[Any]:
    from shared.ops.config import COMMON

    return COMMON


def start_web(supervisor: Supervisor, web: Child) -> None:
    """Start the page; when its port was taken between the check and the bind (two classes
    started together both saw WEB_PORT free), start it again on the spare port."""
    try:
        supervisor.start(["web"])
    except RuntimeError:
        spare = web.env.get("SPARE_WEB_PORT")
        if not spare or spare == web.env["WEB_PORT"]:
            raise
        log.warning("port %s was taken meanwhile: the page moves to %s", web.env["WEB_PORT"], spare)
        web.env["WEB_PORT"] = spare
        supervisor.start(["web"])


# --- the run -------------------------------------------------------------------------------------

# A stop (Ctrl-C/SIGTERM) has STOP_TIMEOUT in all: the pipeline may drain until these margins are
# left, then the services are stopped (STOP_SERVICES_SECONDS) and the report is written from what
# Redis holds (REPORT_FROM_STORE_SECONDS).
STOP_SERVICES_SECONDS = 3.0
REPORT_FROM_STORE_SECONDS = 4.0
POLL_SECONDS = 0.1  # how often the launcher looks at its children and for the report

# What the reporter needs to write a report later (a stop that could not drain, a recovery); the MQTT
# ones so it still reaches the broker through the outbox (services/reporter/outbox.py).
KEPT_FOR_A_LATE_REPORT = ("REPORT_DIR", "REPORT_FALLBACK_DIR", "REDIS_PREFIX", "CLASS_LEVEL_ONLY", "EU_AI_ACT_MODE",
                          "JOURNAL_DIR", "STREAMS", "MESSAGING", "MQTT_HOST", "MQTT_PORT", "DEVICE_ID", "OUTBOX_PATH")


class RunRefused(Exception):
    """The run cannot start (a bad setting, a refused claim, a bus folder that is not private): one line, exit 2."""


@dataclass
class ClassRun:
    """One class as it runs: what its steps after the planning read of its settings (each a typed
    value taken once from them), its processes and what is left to tidy at the end."""

    session: str
    streams: list[Stream]
    reports: ReportFolders
    outbox: Outbox | None  # MESSAGING=1: where a report the broker has not taken waits
    stop_timeout: float
    report_timeout: float
    open_page: bool
    stops: StopRequests
    claim: SessionClaim | None
    run_dir: Path
    bus_dir: str = ""
    private: PrivateRedis | None = None
    redis_url: str = ""
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    keep: dict[str, str] = field(default_factory=dict)
    captures: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # the stop order: the captures first, the page last
    supervisor: Supervisor | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def captures_up(self) -> Path:
        """The file whose coming tells the captures every one of them is up."""
        return self.run_dir / "captures-up"

    @classmethod
    def of(cls, settings: LaunchSettings, stops: StopRequests, claim: SessionClaim | None) -> ClassRun:
        """The class's run, its values read from its settings once, here."""
        reports = ReportFolders.of(settings.reporter.report_dir, settings.reporter.report_fallback_dir)
        r = settings.reporter
        outbox = Outbox.of(reports, r.outbox_path, r.mqtt_host, r.mqtt_port, r.device_id) if r.messaging else None
        return cls(settings.common.session_id, settings.sources, reports, outbox, settings.launcher.stop_timeout,
                   settings.launcher.report_timeout, bool(settings.launcher.open), stops, claim,
                   Path(settings.launcher.state_dir) / "runs" / settings.common.session_id)


@dataclass
class Outcome:
    found: tuple[Path, Path] | None = None
    failed: bool = False  # a service could not start
    aborted: bool = False  # a stop during start-up: the class never started


def run(args: argparse.Namespace,
        adjust_env: Callable[[dict[str, dict[str, str]]], None] | None = None,
        stops: StopRequests | None = None) -> int:
    """Run one session; `adjust_env` may rewire the planned per-service environments. `stops`: the caller's
    own (a benchmark that runs one class after another learns from it that the user asked to stop)."""
    stops = stops or StopRequests()
    stops.install()  # from the very start: a stop during the checks starts nothing
    try:
        settings, session_given = settings_of_run(args)
        code, warned = preflight(settings, session_given)
        if code or stops.stopping.is_set():
            return code or _said_not_started()
        the_run = claim_and_prepare(settings, session_given, stops, adjust_env)
        say_warnings(warned)
    except RunRefused as exc:
        print(f"engagement run: {exc}", file=sys.stderr, flush=True)
        return EXIT_CHECK_FAILED
    outcome = Outcome()
    try:
        start_services(the_run)
        outcome.found = wait_for_report(the_run)
    except StartStopped:
        log.info("stop requested during start-up: nothing more is started")
        outcome.aborted = True
    except RuntimeError as exc:
        log.error("%s", exc)
        outcome.failed = True
    finally:
        outcome.found = stop_and_tidy(the_run, outcome)
    return end_of_run(the_run, outcome)


def settings_of_run(args: argparse.Namespace) -> tuple[LaunchSettings, bool]:
    """The run's typed settings (its session id made when not given) and whether the id was given;
    RunRefused for a bad one."""
    try:
        settings = resolve_run(args)
    except SettingError as exc:
        raise RunRefused(str(exc)) from None
    return settings, settings.session_given


def _said_not_started() -> int:
    print("engagement run: stopped before the class started: nothing was captured, no report", flush=True)
    return 0


def claim_and_prepare(settings: LaunchSettings, session_given: bool, stops: StopRequests,
                      adjust_env: Callable[[dict[str, dict[str, str]]], None] | None) -> ClassRun:
    """Claim the session id, write what a crashed run left, and plan every process; RunRefused."""
    try:  # atomic, unlike the check: of two runs started together with one --session-id, one stops here
        totals = settings.aggregator
        claim = claim_session(totals.redis_url, totals.redis_prefix, settings.common.session_id, session_given)
    except ClaimRefused as exc:
        raise RunRefused(str(exc)) from None
    state_dir = Path(settings.launcher.state_dir)
    recover_interrupted(state_dir, settings.aggregator.redis_url)
    the_run = ClassRun.of(settings, stops, claim)
    # TRANSPORT=ipc: Unix sockets in a private folder; tcp: the run's CURVE keys there (bus_folder.py).
    try:
        the_run.bus_dir = make_bus_folder(settings)
    except BusFolderError as exc:
        if claim:
            claim.release()
        raise RunRefused(str(exc)) from None
    if not settings.aggregator.redis_url:  # a redis-server of the run's own, its data in the run's folder
        the_run.private = PrivateRedis(the_run.run_dir / "redis", os.getpid())
        log.info("no REDIS_URL: started a private redis-server at %s (data in %s)", the_run.private.url,
                 the_run.private.dir)
    the_run.redis_url = the_run.private.url if the_run.private else settings.aggregator.redis_url
    plan_processes(the_run, settings, adjust_env)
    return the_run


def plan_processes(the_run: ClassRun, settings: LaunchSettings,
                   adjust_env: Callable[[dict[str, dict[str, str]]], None] | None) -> None:
    """Each process's environment, the run's record (run.json) and the supervisor of the children."""
    bus_dir = the_run.bus_dir if settings.launcher.transport == "ipc" else ""
    envs = plan_environment(settings, the_run.redis_url, bus_dir)
    use_run_folder_for_journal(envs, settings.aggregator.journal_dir, Path(settings.launcher.state_dir))
    the_run.order = services_of(envs)  # the stop order; adjust_env rewires values, never the processes
    if adjust_env:
        adjust_env(envs)
    the_run.run_dir.mkdir(parents=True, exist_ok=True)
    the_run.keep = {k: envs["reporter"][k] for k in KEPT_FOR_A_LATE_REPORT if k in envs["reporter"]}
    (the_run.run_dir / "run.json").write_text(json.dumps({
        "session": the_run.session, "pid": os.getpid(), "private": the_run.private is not None,
        "env": the_run.keep,
        "values": {"report_dir": settings.reporter.report_dir,
                   "report_fallback_dir": settings.reporter.report_fallback_dir}}))
    the_run.envs = envs
    the_run.captures = [name for name in the_run.order if name.startswith("capture")]
    for name in the_run.captures:  # they play once every one is up (start_services makes the file)
        envs[name][START_GATE_ENV] = str(the_run.captures_up)
    use_run_folder_for_capture_state(envs, the_run.captures, the_run.run_dir)
    children = [Child(name, envs[name], int(envs[name]["METRICS_PORT"]),
                      service="capture" if name in the_run.captures else name) for name in the_run.order]
    the_run.supervisor = supervisor = Supervisor(children, settings.launcher.max_restarts, the_run.stops)

    def stop_captures() -> None:
        for name in the_run.captures:
            supervisor.signal(name, signal.SIGTERM)

    the_run.stops.on_first = stop_captures


def use_run_folder_for_capture_state(envs: dict[str, dict[str, str]], captures: list[str], run_dir: Path) -> None:
    """Captures keep their stream's state in the run's folder unless CAPTURE_STATE_DIR is set: a
    video file restarted after a crash then resumes where it was (services/capture/resume.py), not
    from its start. Emptied first: a start of this run is never a crashed run's restart."""
    folder = run_dir / "capture-state"
    shutil.rmtree(folder, ignore_errors=True)
    for name in captures:
        if not envs[name].get("CAPTURE_STATE_DIR"):
            envs[name]["CAPTURE_STATE_DIR"] = str(folder)


def _supervisor(the_run: ClassRun) -> Supervisor:
    assert the_run.supervisor is not None, "plan_processes makes it"
    return the_run.supervisor


def start_services(the_run: ClassRun) -> None:
    """The page first, then downstream-first, the captures last and together."""
    supervisor = _supervisor(the_run)
    start_order = list(reversed(the_run.order))
    log.info("session %s: starting %s", the_run.session, ", ".join(start_order))
    start_web(supervisor, supervisor.children["web"])
    supervisor.start([name for name in start_order if name != "web" and name not in the_run.captures])
    supervisor.start_together(the_run.captures)
    the_run.captures_up.touch()  # every capture is up: they play (services/capture/service.py)
    if the_run.open_page:
        webbrowser.open(f"http://127.0.0.1:{the_run.envs['web']['WEB_PORT']}/")
    ports = {c.name: c.metrics_port for c in supervisor.children.values()}
    log.info("all services up in %.1f s; metrics ports %s", time.monotonic() - the_run.started, ports)


def wait_for_report(the_run: ClassRun) -> tuple[Path, Path] | None:
    """Until the report is written once every source ended (or a stop was asked for), or a reason
    to stop waiting: a second stop, a stop that cannot drain in time, Redis gone, REPORT_TIMEOUT.
    The report found last (one may be on disk before the sources ended)."""
    stops, supervisor = the_run.stops, _supervisor(the_run)
    drain_for = the_run.stop_timeout - STOP_SERVICES_SECONDS - REPORT_FROM_STORE_SECONDS
    source_ended_at = None
    ended: set[str] = set()
    watch = StoreWatch(the_run.private, the_run.run_dir, the_run.reports, the_run.redis_url)
    while True:
        watch.check()
        newly = set(supervisor.poll()) & set(the_run.captures)
        for name in sorted(newly):
            if supervisor.children[name].crashed:  # no eos of its own: end its stream for it
                send_eos_for(the_run.envs[name], CRASHED_REASON)
        ended |= newly
        if len(ended) == len(the_run.captures) and source_ended_at is None:
            source_ended_at = time.monotonic()
            log.info("source ended; waiting for the report" if len(the_run.captures) == 1
                     else "every source ended; waiting for the report")
        found = the_run.reports.find(the_run.session)
        if found and (source_ended_at is not None or stops.stopping.is_set()):
            return found
        if stops.hurry.is_set():
            return found
        if stops.first_at is not None and time.monotonic() - stops.first_at > drain_for:
            log.warning("the pipeline has not drained %.0f s after the stop request: stopping it and "
                        "writing the report from what Redis holds", drain_for)
            return found
        if source_ended_at is not None and watch.store_gone() > STORE_GONE_SECONDS:
            log.error("Redis at %s unreachable for %.0f s after the source ended: stopping the pipeline and "
                      "writing the report from the journal", safe_url(the_run.redis_url), STORE_GONE_SECONDS)
            return found
        if source_ended_at is not None and time.monotonic() - source_ended_at > the_run.report_timeout:
            log.error("no report after %.0f s", the_run.report_timeout)
            return found
        time.sleep(POLL_SECONDS)


def stop_and_tidy(the_run: ClassRun, outcome: Outcome) -> tuple[Path, Path] | None:
    """Stop every process within STOP_TIMEOUT of the stop request (or from now), write the report
    from Redis when the pipeline did not, and remove what the run no longer needs; the report."""
    stop_timeout, stops = the_run.stop_timeout, the_run.stops
    end = (stops.first_at if stops.first_at is not None else time.monotonic()) + stop_timeout
    _supervisor(the_run).stop(the_run.order, deadline=end - REPORT_FROM_STORE_SECONDS,
                              together=outcome.found is not None)
    found = the_run.reports.find(the_run.session)
    failed = outcome.failed or outcome.aborted  # a class that never started has no report to write
    if not found and not failed:  # what the aggregator wrote is the class: report it, marked interrupted
        report_from_redis(the_run.session, the_run.redis_url, the_run.keep, end - time.monotonic())
        found = the_run.reports.find(the_run.session)
    # A class that never started has nothing to keep; one that ran keeps its totals until
    # its report is on disk (the next start writes it).
    keep_totals = found is None and not failed
    if the_run.private:
        the_run.private.stop(keep_data=keep_totals)
    if the_run.bus_dir:
        shutil.rmtree(the_run.bus_dir, ignore_errors=True)
    if not keep_totals:  # the run record (and the journal in it) stays until the report is on disk
        remove_run(the_run.run_dir)
    if the_run.claim:
        the_run.claim.release()
    return found


def end_of_run(the_run: ClassRun, outcome: Outcome) -> int:
    """The exit code, the streams that failed, the summary and the report's paths."""
    if outcome.aborted:
        return _said_not_started()
    elapsed = time.monotonic() - the_run.started
    failed = outcome.failed or outcome.aborted
    code = 0 if outcome.found and not failed else 1  # drained, or written from Redis at the stop's deadline
    gave_up, crashed = _failed_streams(the_run)
    if code == 0 and gave_up:
        _say_failed_streams(gave_up, crashed, single=len(the_run.captures) == 1)
        code = EXIT_GAVE_UP
    if outcome.found:
        txt, js = outcome.found
        print_summary(js, elapsed, [stream.id for stream in gave_up] if len(the_run.captures) > 1 else [], crashed)
        say_where_figures_came_from(js)
        if txt.parent != the_run.reports.asked:
            print(f"the report could not be written to {the_run.reports.asked}: saved in {txt.parent}", flush=True)
        print(f"report: {txt}")
        print(f"report: {js}", flush=True)
        print_outbox_state(the_run.outbox, the_run.session)
    elif not failed:
        print(f"no report yet: the class's totals are kept in {the_run.run_dir}; the next `engagement run` in this "
              f"folder writes its report", flush=True)
    return code


def _failed_streams(the_run: ClassRun) -> tuple[list[Stream], set[str]]:
    """The streams whose capture gave up or kept crashing, and the ids of those that crashed."""
    children = _supervisor(the_run).children
    pairs = list(zip(the_run.captures, the_run.streams, strict=False))
    gave_up = [stream for name, stream in pairs if EXIT_GAVE_UP in children[name].exit_codes or children[name].crashed]
    return gave_up, {stream.id for name, stream in pairs if children[name].crashed}


def _say_failed_streams(gave_up: list[Stream], crashed: set[str], single: bool) -> None:
    for stream in gave_up:
        if stream.id in crashed:
            log.error("stream %s: its capture kept crashing and was left down: the class went on without it, "
                      "the report covers what it captured", stream.id)
        elif single:
            log.error("the source %s could not be read: the report covers what was captured (maybe nothing)",
                      stream.source)
        else:
            log.error("stream %s: the source %s could not be read (it gave up): the class went on without "
                      "it, the report covers what it captured", stream.id, stream.source)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("launcher", log_level_of_environment())
    try:
        return run(args)
    except KeyboardInterrupt:  # Ctrl-C before the launcher's own handler was in place: nothing started
        print("engagement run: interrupted", file=sys.stderr, flush=True)
        return 130


def check_main(argv: list[str]) -> int:
    """`engagement check`: the table of every check, exit 2 if one failed."""
    args = build_parser("engagement check", "Check everything a class needs, before the class: the source, the "
                        "report and recording folders, Redis, the model, ports. Takes the flags of "
                        "`engagement run`.").parse_args(argv)
    try:
        settings = resolve_run(args)
    except SettingError as exc:
        print(f"engagement check: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    results = run_all_checks(settings, session_given=settings.session_given)
    print(checks.table(results), flush=True)
    return EXIT_CHECK_FAILED if any(not r.ok for r in results) else 0
