"""ENGINE=onnx (ONNX Runtime on the bundle's model.onnx) and ENGINE=auto's choice among the engines
this machine can run. Tiny real Keras models exported as the training step does; real faces.

Only ONNX Runtime's CPU provider exists here: CUDA and TensorRT need an NVIDIA GPU
(scripts/gpu-check.sh runs the same comparison on one)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.inference.bundle import AUTO_TOLERANCE, BundleError, NoEngineError, load_predictor
from services.inference.onnx_engine import available_providers
from shared.data.model_card import CARD_FILE
from tests.inference.faces import astronaut_crop
from tests.inference.tiny_bundles import SEQUENCE_LENGTH, build

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
KINDS = ("frame", "sequence", "multitask")
# The inference image on the Jetson has no TensorFlow; a child process stands in for it by
# making `import tensorflow` fail (and importlib find nothing) before anything else runs.
NO_TENSORFLOW = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx-bundles")
    return {kind: build(kind, root / kind, onnx=True, tflite=kind != "sequence") for kind in KINDS}


def real_crops(kind: str, n: int, side: int = 64) -> np.ndarray:
    """uint8 BGR face crops as the sequencer sends them: the astronaut and LFW faces."""
    from skimage import data

    faces = [cv2.resize(astronaut_crop(), (side, side), interpolation=cv2.INTER_AREA)]
    for gray in data.lfw_subset()[: n * SEQUENCE_LENGTH]:
        face = cv2.resize((gray * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_AREA)
        faces.append(cv2.cvtColor(face, cv2.COLOR_GRAY2BGR))
    if kind == "sequence":
        return np.stack([np.stack(faces[i:i + SEQUENCE_LENGTH]) for i in range(n)])
    return np.stack(faces[:n])


def test_only_the_cpu_provider_here():
    assert available_providers()[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_engine_agrees_with_keras_on_real_faces(bundles, kind):
    keras_p = load_predictor(bundles[kind], "keras")
    onnx_p = load_predictor(bundles[kind], "onnx")
    assert onnx_p.engine == "onnx" and onnx_p.device == "cpu"
    for n in (1, 4):  # one face, and several in one call
        crops = real_crops(kind, n)
        expected, got = keras_p.predict(crops), onnx_p.predict(crops)
        assert list(got) == list(expected) == keras_p.card.heads
        for head in expected:
            assert got[head].shape == (n, 4)
            np.testing.assert_allclose(got[head], expected[head], atol=AUTO_TOLERANCE, err_msg=head)
    # The heads are not all alike, so a swapped head would show above.
    if kind == "multitask":
        out = onnx_p.predict(real_crops(kind, 4))
        assert not np.allclose(out["boredom"], out["confusion"])


def test_auto_measures_onnx_beside_keras_and_tflite(bundles, caplog):
    caplog.set_level("INFO", logger="services.inference.bundle")
    auto = load_predictor(bundles["frame"], "auto")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("engine auto:")]
    for engine in ("keras/cpu", "tflite/cpu", "onnx/cpu", "predict/cpu"):
        assert engine in line, line
    assert auto.engine in ("keras", "tflite", "onnx", "predict")


def test_auto_leaves_out_an_onnx_file_that_disagrees_with_keras(bundles, tmp_path, caplog):
    """A model.onnx of another model (wrong weights): auto measures it, finds it off, never picks it."""
    bundle = shutil.copytree(bundles["frame"], tmp_path / "frame")
    other = build("frame", tmp_path / "other", onnx=True)
    import keras

    model = keras.models.load_model(other / "model.keras", compile=False)
    model.set_weights([w * 1.5 for w in model.get_weights()])  # same graph, other numbers
    from training.export import keras_order
    from training.onnx_export import to_onnx
    to_onnx(model, bundle / "model.onnx", ["boredom"], keras_order(model, ["boredom"]))
    caplog.set_level("INFO", logger="services.inference.bundle")
    auto = load_predictor(bundle, "auto")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("engine auto:")]
    assert "onnx off by" in line, line
    assert auto.engine != "onnx"


def test_without_tensorflow_auto_runs_the_checked_onnx_file(bundles, tmp_path):
    crops = real_crops("multitask", 3)
    np.save(tmp_path / "crops.npy", crops)
    code = (NO_TENSORFLOW +
            "import json, logging, numpy as np\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "from services.inference.bundle import load_predictor\n"
            f"p = load_predictor({str(bundles['multitask'])!r}, 'auto')\n"
            f"out = p.predict(np.load({str(tmp_path / 'crops.npy')!r}))\n"
            "print(json.dumps({h: v.tolist() for h, v in out.items()}))\n"
            "print(p.engine, p.device, sorted(m for m in ('tensorflow', 'keras') if sys.modules.get(m)))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    *_, outputs, engine_line = done.stdout.strip().splitlines()
    engine, device, imported = engine_line.split(" ", 2)
    assert engine in ("onnx", "tflite") and device == "cpu" and imported == "[]"
    assert "keras: TensorFlow is not installed" in done.stderr
    expected = load_predictor(bundles["multitask"], "keras").predict(crops)
    got = json.loads(outputs)
    for head in expected:
        np.testing.assert_allclose(np.array(got[head]), expected[head], atol=AUTO_TOLERANCE, err_msg=head)


def test_without_tensorflow_an_unchecked_bundle_has_no_engine(bundles, tmp_path):
    """The sequence bundle has no model.tflite and its card's ONNX check is removed: nothing agrees."""
    bundle = shutil.copytree(bundles["sequence"], tmp_path / "sequence")
    card = json.loads((bundle / CARD_FILE).read_text())
    card["exports"] = {}
    (bundle / CARD_FILE).write_text(json.dumps(card))
    code = (NO_TENSORFLOW +
            "from services.inference.bundle import NoEngineError, load_predictor\n"
            "try:\n"
            f"    load_predictor({str(bundle)!r}, 'auto')\n"
            "except NoEngineError as exc:\n"
            "    print('no engine:', exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip()
    assert line.startswith("no engine: no engine on this machine can run 'tiny-sequence'"), line
    assert "keras: TensorFlow is not installed" in line and "tflite: no model.tflite" in line
    assert "onnx: not checked against Keras by the export step" in line


def test_explicit_onnx_without_the_file_is_no_engine(bundles, tmp_path):
    bundle = shutil.copytree(bundles["frame"], tmp_path / "frame")
    (bundle / "model.onnx").unlink()
    with pytest.raises(NoEngineError, match="model.onnx is missing: export the bundle again"):
        load_predictor(bundle, "onnx")
    (bundle / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(BundleError, match="cannot load the ONNX model"):
        load_predictor(bundle, "onnx")


def test_tensorrt_options_come_from_the_settings(tmp_path):
    """TensorRT is not here (no GPU): what the provider would be given, from TRT_CACHE_DIR and TRT_FP16."""
    from services.inference.onnx_engine import TrtOptions, _options
    from shared.ops.config import load_settings

    settings = load_settings("inference", ["--trt-cache-dir", str(tmp_path / "trt"), "--trt-fp16", "0"])
    options = _options("TensorrtExecutionProvider", TrtOptions(settings.trt_cache_dir, bool(settings.trt_fp16)))
    assert options == {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path / "trt"),
                       "trt_fp16_enable": False}
    assert (tmp_path / "trt").is_dir()  # made before the first engine is built
    assert _options("CPUExecutionProvider", TrtOptions()) == {}
    assert TrtOptions().cache_path().parts[-2:] == ("engagement", "tensorrt")



def test_tensorrt_gets_one_profile_for_every_number_of_faces(bundles, tmp_path):
    """One engine for 1..32 faces (else TensorRT rebuilds for each new batch size): built from the
    exported input, whose name and shape this reads with ONNX Runtime on the CPU."""
    from services.inference.onnx_engine import TrtOptions, _options

    options = _options("TensorrtExecutionProvider", TrtOptions(str(tmp_path)), bundles["sequence"] / "model.onnx")
    assert options["trt_profile_min_shapes"] == f"input:1x{SEQUENCE_LENGTH}x32x32x3"
    assert options["trt_profile_opt_shapes"] == f"input:8x{SEQUENCE_LENGTH}x32x32x3"
    assert options["trt_profile_max_shapes"] == f"input:32x{SEQUENCE_LENGTH}x32x32x3"
