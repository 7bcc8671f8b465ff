"""Issue 22, item 4: two `engagement run` started together with the same --session-id on one
Redis. Before: both passed the check and one report showed the other video's frames. Now the
run claims its id atomically (services/launcher/session_claim.py): the second stops with one line and
exit code 2, the first reports its own frames, and its claim is gone at its end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import redis

from services.launcher.session_claim import claim_key
from tests.support.env import REDIS_URL
from tests.support.runs import wait_gone


def test_two_runs_with_one_session_id_on_one_redis_one_stops_with_exit_2(classroom: Path,
                                                                         one_face_video: dict) -> None:
    session = f"claim-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPORT_DIR", "FPS", "RECORD")}
    args = [sys.executable, "-m", "engagement.cli", "run", "--source", "class.avi", "--redis-url", REDIS_URL,
            "--session-id", session]
    procs = [subprocess.Popen(args, cwd=classroom, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], [e[-2000:] for _, e in outs]
    winner, loser = (outs[0], outs[1]) if codes[0] == 0 else (outs[1], outs[0])
    lines = [line for line in loser[1].splitlines() if line.strip()]
    assert len(lines) == 1 and session in lines[0] and ("in use by another run" in lines[0]
                                                         or "already used" in lines[0]), loser[1]
    found = re.findall(r"^report: (\S+\.json)$", winner[0], re.M)
    report = json.loads((classroom / found[-1]).read_text())
    assert report["session"] == session
    assert report["totals"]["frames"] == int(one_face_video["seconds"] * 2 + 0.5)  # its own video's, no more
    assert redis.Redis.from_url(REDIS_URL).get(claim_key("engagement", session)) is None  # released at its end
    assert wait_gone(classroom) == []
