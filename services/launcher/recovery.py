"""Classes that outlive their launcher: a run's record (STATE_DIR/runs/<session>/run.json) left by
a launcher that died, or by a run that ended without its report, is found at the next start, and
the reporter writes that class's report from what Redis holds, or from the aggregator's journal
in the same folder when Redis is gone or lost part of it (shared/data/journal.py), so no class is lost
to a crash, a stop that could not drain in time, or its store. The record goes only once the
report is on disk."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from services.launcher.claim import ClaimRefused, claim_session
from services.launcher.private_redis import PrivateRedis
from services.launcher.summary import ReportFolders
from shared.data.journal import find_journal
from shared.ops.config import process_environment

log = logging.getLogger("launcher")
# A class on a shared Redis whose URL this start was not given: its journal is the class (nothing
# listens on port 1, so the reporter finds Redis unreachable at once and reads the journal).
NO_REDIS = "redis://127.0.0.1:1/0"


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
        env = record.get("env", {})
        journal = find_journal(env.get("JOURNAL_DIR", ""), session, env.get("REPORT_FALLBACK_DIR") or None)
        if not record.get("private") and not redis_url and not journal:
            log.warning("session %s was interrupted on a shared Redis: give its REDIS_URL to write its report",
                        session)
            continue
        log.warning("session %s was interrupted (its launcher died): writing its report now", session)
        private = PrivateRedis(run_dir / "redis", os.getpid()) if record.get("private") else None
        url = private.url if private else (redis_url or NO_REDIS)
        try:  # a shared Redis: take over the dead run's claim on its id (services/launcher/claim.py)
            claim = None if private or not redis_url else claim_session(
                url, record.get("env", {}).get("REDIS_PREFIX") or "", session, False)
        except ClaimRefused as exc:
            log.warning("session %s not recovered now: %s", session, exc)
            continue
        report_from_redis(session, url, record.get("env", {}), 30.0)
        folders = record.get("values") or {"report_dir": record.get("env", {}).get("REPORT_DIR", "reports")}
        found = ReportFolders.of(folders["report_dir"], folders.get("report_fallback_dir", "")).find(session)
        if claim:
            claim.release()
        if private:
            private.stop(keep_data=found is None)
        if found:
            written.append(found)
            print(f"report of interrupted session {session}: {found[0]} {found[1]}", flush=True)
            remove_run(run_dir)
    return written


def report_from_redis(session: str, redis_url: str, env: Mapping[str, str], timeout: float) -> None:
    """The reporter, once, writing `session`'s report from what Redis holds (marked interrupted
    when the class never ended): for a class whose launcher died, or a stop that could not
    drain in time."""
    full = {k: v for k, v in process_environment().items() if k != "CONFIG_FILE"}
    full.update(env)
    full.update({"SESSION_ID": session, "REDIS_URL": redis_url, "REPORT_RECOVER": "1", "METRICS_PORT": "0",
                 "PREVIEW_IN": "", "UPDATES_IN": "", "RECORD": "0"})
    try:
        subprocess.run([sys.executable, "-m", "engagement.cli", "reporter"], env=full, timeout=max(1.0, timeout),
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
