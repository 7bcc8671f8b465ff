"""`engagement run`: the whole pipeline as separate OS processes on loopback.

Every setting of every pipeline service is a flag here (same name as the single service's),
an environment variable or a key of the YAML config file (`--config`). Before anything
starts, the settings are validated and the checks of `engagement check` run (source,
folders, Redis, model, ports); the first failure is one line and exit code 2.

Then it starts the services downstream-first (each healthy before the next), capture last;
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
import tempfile
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.launcher.plan import (
    RUN_SERVICES,
    new_session_id,
    plan_environment,
    resolve_run,
    run_settings,
    services_of,
)
from services.launcher.preflight import EXIT_CHECK_FAILED, preflight, run_all_checks
from services.launcher.private_redis import PrivateRedis
from services.launcher.recovery import recover_interrupted, remove_run, report_from_redis
from services.launcher.stand_in import CRASHED_REASON, send_eos_for
from services.launcher.summary import find_report, print_summary
from services.launcher.supervisor import Child, Supervisor
from shared import checks
from shared.config import LAUNCHER, SERVICES, SettingError, add_flags
from shared.logs import setup_logging
from shared.service import EXIT_GAVE_UP

log = logging.getLogger("launcher")

SHORT_OPTIONS = {"--record": "-r", "--messaging": "-m"}  # the reference system's, as the reporter takes them


def build_parser(prog: str = "engagement run", description: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    from shared.config import COMMON

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

def run(args: argparse.Namespace,
        adjust_env: Callable[[dict[str, dict[str, str]]], None] | None = None) -> int:
    """Run one session; `adjust_env` may rewire the planned per-service environments."""
    try:
        values = resolve_run(args)
    except SettingError as exc:
        print(f"engagement run: {exc}", file=sys.stderr, flush=True)
        return EXIT_CHECK_FAILED
    session_given = bool(values["session_id"])
    if not session_given:
        values["session_id"] = new_session_id(values["stream_id"])
    args.session_id = values["session_id"]
    code = preflight(values, session_given)
    if code:
        return code
    session = values["session_id"]
    state_dir = Path(values["state_dir"])
    recover_interrupted(state_dir, values["redis_url"])

    run_dir = state_dir / "runs" / session
    private = None
    redis_url = values["redis_url"]
    if not redis_url:
        private = PrivateRedis(run_dir / "redis", os.getpid())
        redis_url = private.url
        log.info("no REDIS_URL: started a private redis-server at %s (data in %s)", redis_url, private.dir)
    # TRANSPORT=ipc: Unix sockets in a private folder (mode 0700: only this user's processes reach them).
    bus_dir = tempfile.mkdtemp(prefix="engagement-bus-") if values.get("transport") == "ipc" else ""
    envs = plan_environment(values, redis_url, bus_dir)
    if adjust_env:
        adjust_env(envs)
    run_dir.mkdir(parents=True, exist_ok=True)
    keep = {k: envs["reporter"][k] for k in ("REPORT_DIR", "REPORT_FALLBACK_DIR", "REDIS_PREFIX", "CLASS_LEVEL_ONLY",
                                              "EU_AI_ACT_MODE") if k in envs["reporter"]}
    (run_dir / "run.json").write_text(json.dumps({
        "session": session, "pid": os.getpid(), "private": private is not None, "env": keep,
        "values": {"report_dir": values["report_dir"], "report_fallback_dir": values["report_fallback_dir"]}}))
    order = services_of(envs)  # the stop order: the captures first, the page last
    captures = [name for name in order if name.startswith("capture")]
    children = [Child(name, envs[name], int(envs[name]["METRICS_PORT"]),
                      service="capture" if name in captures else name) for name in order]
    supervisor = Supervisor(children, values["max_restarts"])
    stop_requested: list[float] = []

    def on_signal(signum: int, _frame: object) -> None:
        if stop_requested:  # a second Ctrl-C: stop at once
            log.warning("second stop request: stopping every service now")
            raise KeyboardInterrupt
        stop_requested.append(time.monotonic())
        log.info("stop requested: ending the session (the report is still written)")
        for name in captures:
            supervisor.signal(name, signal.SIGTERM)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stop_timeout = float(values["stop_timeout"])
    started = time.monotonic()
    code = 1
    found = None
    failed = False  # a service could not start
    try:
        start_order = list(reversed(order))
        log.info("session %s: starting %s", session, ", ".join(start_order))
        start_web(supervisor, supervisor.children["web"])
        supervisor.start([name for name in start_order if name != "web" and name not in captures])
        supervisor.start_together(captures)
        if values.get("open"):
            webbrowser.open(f"http://127.0.0.1:{envs['web']['WEB_PORT']}/")
        ports = {c.name: c.metrics_port for c in children}
        log.info("all services up in %.1f s; metrics ports %s", time.monotonic() - started, ports)
        source_ended_at = None
        ended: set[str] = set()
        while True:
            newly = set(supervisor.poll()) & set(captures)
            for name in sorted(newly):
                if supervisor.children[name].crashed:  # no eos of its own: end its stream for it
                    send_eos_for(envs[name], CRASHED_REASON)
            ended |= newly
            if len(ended) == len(captures) and source_ended_at is None:
                source_ended_at = time.monotonic()
                log.info("source ended; waiting for the report" if len(captures) == 1
                         else "every source ended; waiting for the report")
            found = find_report(values, session)
            if found and (source_ended_at is not None or stop_requested):
                code = 0
                break
            # A stop leaves time to stop the services (3 s) and write the report from Redis (4 s).
            if stop_requested and time.monotonic() - stop_requested[0] > stop_timeout - 7:
                log.warning("the pipeline has not drained %.0f s after the stop request: stopping it and "
                            "writing the report from what Redis holds", stop_timeout - 7)
                break
            if source_ended_at is not None and time.monotonic() - source_ended_at > values["report_timeout"]:
                log.error("no report after %.0f s", values["report_timeout"])
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        log.error("%s", exc)
        failed = True
    finally:
        end = (stop_requested[0] + stop_timeout) if stop_requested else time.monotonic() + stop_timeout
        supervisor.stop(order, deadline=end - 4)
        found = find_report(values, session)
        if not found and not failed:  # what the aggregator wrote is the class: report it, marked interrupted
            report_from_redis(session, redis_url, keep, end - time.monotonic())
            found = find_report(values, session)
        # A class that never started has nothing to keep; one that ran keeps its totals until
        # its report is on disk (the next start writes it).
        keep_totals = found is None and not failed
        if private:
            private.stop(keep_data=keep_totals)
        if bus_dir:
            shutil.rmtree(bus_dir, ignore_errors=True)
        if not (keep_totals and private):
            remove_run(run_dir)
    elapsed = time.monotonic() - started
    if found and not failed:
        code = 0  # the class is on disk (drained, or written from Redis at the stop's deadline)
    gave_up = [stream for name, stream in zip(captures, values.get("sources") or [], strict=False)
               if EXIT_GAVE_UP in supervisor.children[name].exit_codes or supervisor.children[name].crashed]
    crashed = {stream.id for name, stream in zip(captures, values.get("sources") or [], strict=False)
               if supervisor.children[name].crashed}
    if code == 0 and gave_up:
        for stream in gave_up:
            if stream.id in crashed:
                log.error("stream %s: its capture kept crashing and was left down: the class went on without it, "
                          "the report covers what it captured", stream.id)
            elif len(captures) == 1:
                log.error("the source %s could not be read: the report covers what was captured (maybe nothing)",
                          stream.source)
            else:
                log.error("stream %s: the source %s could not be read (it gave up): the class went on without "
                          "it, the report covers what it captured", stream.id, stream.source)
        code = EXIT_GAVE_UP
    if found:
        txt, js = found
        print_summary(js, elapsed, [stream.id for stream in gave_up] if len(captures) > 1 else [], crashed)
        if txt.parent != Path(values["report_dir"]):
            print(f"the report could not be written to {values['report_dir']}: saved in {txt.parent}", flush=True)
        print(f"report: {txt}")
        print(f"report: {js}", flush=True)
    elif private:
        print(f"no report yet: the class's totals are kept in {run_dir}; the next `engagement run` in this "
              f"folder writes its report", flush=True)
    return code


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("launcher", os.environ.get("LOG_LEVEL", "INFO"))
    return run(args)


def check_main(argv: list[str]) -> int:
    """`engagement check`: the table of every check, exit 2 if one failed."""
    args = build_parser("engagement check", "Check everything a class needs, before the class: the source, the "
                        "report and recording folders, Redis, the model, ports. Takes the flags of "
                        "`engagement run`.").parse_args(argv)
    try:
        values = resolve_run(args)
    except SettingError as exc:
        print(f"engagement check: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    results = run_all_checks(values, session_given=bool(values["session_id"]))
    print(checks.table(results), flush=True)
    return EXIT_CHECK_FAILED if any(not r.ok for r in results) else 0
