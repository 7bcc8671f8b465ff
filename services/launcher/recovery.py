"""Classes that outlive their launcher: a run's record (STATE_DIR/runs/<session>/run.json) left by
a launcher that died is found at the next start, and the reporter writes that class's report
from what Redis holds, so no class is lost to a crash or a stop that could not drain in time."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from services.launcher.private_redis import PrivateRedis
from services.launcher.summary import find_report

log = logging.getLogger("launcher")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(state_dir: Path, redis_url: str = "") -> list[tuple[Path, Path]]:
    """Write the report of every class whose launcher died (its run record is still here).

    A class on a private Redis is read from the data that Redis left in the record's folder;
    one on a shared Redis from this run's REDIS_URL (never written to disk: it may carry a
    password).
    """
    written = []
    for record_path in sorted(state_dir.glob("runs/*/run.json")):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(int(record.get("pid", 0))) and record.get("pid") != os.getpid():
            continue  # another class still running in this folder
        run_dir = record_path.parent
        session = record["session"]
        if not record.get("private") and not redis_url:
            log.warning("session %s was interrupted on a shared Redis: give its REDIS_URL to write its report",
                        session)
            continue
        log.warning("session %s was interrupted (its launcher died): writing its report now", session)
        private = PrivateRedis(run_dir / "redis", os.getpid()) if record.get("private") else None
        url = private.url if private else redis_url
        report_from_redis(session, url, record.get("env", {}), 30.0)
        found = find_report(record.get("values", {"report_dir": record.get("env", {}).get("REPORT_DIR", "reports")}),
                            session)
        if private:
            private.stop(keep_data=found is None)
        if found:
            written.append(found)
            print(f"report of interrupted session {session}: {found[0]} {found[1]}", flush=True)
            remove_run(run_dir)
    return written


def report_from_redis(session: str, redis_url: str, env: dict[str, str], timeout: float) -> None:
    """The reporter, once, writing `session`'s report from what Redis holds (marked interrupted
    when the class never ended): for a class whose launcher died, or a stop that could not
    drain in time."""
    full = {k: v for k, v in os.environ.items() if k != "CONFIG_FILE"}
    full.update(env)
    full.update({"SESSION_ID": session, "REDIS_URL": redis_url, "REPORT_RECOVER": "1", "METRICS_PORT": "0",
                 "PREVIEW_IN": "", "UPDATES_IN": "", "MESSAGING": "0", "RECORD": "0"})
    try:
        subprocess.run([sys.executable, "-m", "shared.cli", "reporter"], env=full, timeout=max(1.0, timeout),
                       stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        log.error("the report of %s took over %.0f s; its totals are kept for the next start", session, timeout)


def remove_run(run_dir: Path) -> None:
    """Forget a run: its record (and a private Redis's data), then runs/ and the state folder if empty."""
    shutil.rmtree(run_dir, ignore_errors=True)
    try:
        run_dir.parent.rmdir()  # runs/ when empty, and the state folder when empty
        run_dir.parent.parent.rmdir()
    except OSError:
        pass
