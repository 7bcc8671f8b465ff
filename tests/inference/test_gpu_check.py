"""scripts/gpu-check.sh and the engine comparison it runs. There is no NVIDIA GPU here: the script
must say so and exit 0 without measuring; the comparison itself runs on the CPU providers, which is
the same code path a GPU machine takes with its CUDA and TensorRT providers added."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.inference.tiny_bundles import build

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_script_says_there_is_no_gpu_and_exits_0(tmp_path):
    assert shutil.which("nvidia-smi") is None, "this test describes a machine without an NVIDIA GPU"
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gpu-check: no NVIDIA GPU on this machine") and "nothing measured" in done.stdout
    assert not (REPO / ".venv-gpu").exists()  # nothing installed, nothing measured


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build("multitask", tmp_path_factory.mktemp("gpu-check") / "multitask", tflite=True, onnx=True)


def _check(bundle: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.inference.gpu_check", "--bundle", str(bundle),
                           "--calls", "3", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_every_engine_here_against_keras_with_ms_per_face(bundle, tmp_path):
    done = _check(bundle, tmp_path / "r.json")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["reference"] == "keras/cpu" and result["providers"] == ["CPUExecutionProvider"]
    rows = {r["engine"]: r for r in result["rows"]}
    assert set(rows) == {"keras/cpu", "tflite/cpu", "onnx/cpu"}
    for row in rows.values():
        assert row["agrees"] and row["max_abs_diff"] <= result["tolerance"]
        assert row["ms_per_face_1"] > 0 and row["ms_per_face_8"] > 0
    assert "onnx/cpu" in done.stdout and "ms/face (8)" in done.stdout


def test_an_engine_that_disagrees_fails_the_check(bundle, tmp_path):
    """model.onnx of another model: the check says NO for onnx and exits 1."""
    wrong = shutil.copytree(bundle, tmp_path / "wrong")
    other = build("multitask", tmp_path / "other", onnx=True)
    import keras

    from training.export import keras_order
    from training.onnx_export import to_onnx
    model = keras.models.load_model(other / "model.keras", compile=False)
    model.set_weights([w * 1.5 for w in model.get_weights()])
    to_onnx(model, wrong / "model.onnx", ["boredom", "engagement", "confusion", "frustration"],
            keras_order(model, ["boredom", "engagement", "confusion", "frustration"]))
    done = _check(wrong, tmp_path / "r.json")
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    rows = {r["engine"]: r for r in json.loads((tmp_path / "r.json").read_text())["rows"]}
    assert not rows["onnx/cpu"]["agrees"] and rows["tflite/cpu"]["agrees"]
    assert any(line.startswith("onnx/cpu") and " NO " in line for line in done.stdout.splitlines())


def test_bad_bundle_is_one_line_and_exit_2(tmp_path):
    done = _check(tmp_path / "nothing-here", tmp_path / "r.json")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("gpu_check: ")
