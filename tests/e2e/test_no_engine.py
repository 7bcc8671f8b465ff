"""`engagement run` with a trained bundle that no engine of this machine can run: the start fails
with one line and a non-zero exit before any service starts (the model check, services/launcher/checks.py,
decides as inference would), and the attention baseline never runs in its place. Inference's own
stop (exit 3, one line) for the same bundle is tested in tests/inference/test_service.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.inference.tiny_bundles import build

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_start_fails_when_no_engine_can_run_the_bundle(sample_video, tmp_path):
    bundle = build("frame", tmp_path / "bundle")
    (bundle / "model.keras").unlink()  # a bundle copied without its model files
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    done = subprocess.run([sys.executable, "-m", "engagement.cli", "run", "--source", str(sample_video["path"]),
                           "--report-dir", str(tmp_path / "reports"), "--redis-url", redis_url, "--model", str(bundle)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode != 0, done.stderr[-3000:]
    err = done.stderr
    lines = [line for line in err.splitlines() if "model:" in line and str(bundle) in line]
    assert len(lines) == 1, err[-3000:]
    assert "has none of model.keras, model.tflite, model.onnx" in lines[0] and "re-export" in lines[0]
    assert "attention baseline" not in err and "Traceback" not in err
    assert not list((tmp_path / "reports").glob("*.json"))  # no report passing the baseline off as the model
