"""`engagement-train export` writes model.onnx for every family and checks it against Keras.

Tiny real models of each of the four families (built by training.models, saved as a run), so
the conversion runs in seconds; the run's data is not there, so the check uses real faces
(scikit-image's LFW). The bundles of the synth chain (tests/training/test_train.py) are
checked on the run's own Test crops.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import pytest

from shared.data.model_card import ModelCard
from training.cli import main
from training.export import export, keras_outputs, lfw_batch
from training.models import ModelOptions, build_model
from training.train import TrainConfig

FAMILIES = {
    "cnn": ModelOptions(family="cnn", base="small", image_size=32, weights="none"),
    "cnn_lstm": ModelOptions(family="cnn_lstm", base="small", image_size=32, sequence_length=3, lstm_units=8,
                             weights="none"),
    "convlstm": ModelOptions(family="convlstm", image_size=32, sequence_length=3, weights="none"),
    "multitask": ModelOptions(family="multitask", base="small", image_size=32, weights="none"),
}
TOLERANCE = 1e-4  # float32 graphs: the same arithmetic, another order of operations


def tiny_run(root: Path, family: str) -> Path:
    """A run directory as `train` leaves it (config.json + model.keras), with an untrained model."""
    keras.utils.set_random_seed(3)
    run = root / f"run-{family}"
    run.mkdir(parents=True)
    cfg = TrainConfig(out_root=str(root / "frames-not-here"), runs_root=str(root), model=FAMILIES[family],
                      trained_on="nothing (test)")
    (run / "config.json").write_text(json.dumps(cfg.to_dict() | {"run": run.name}))
    build_model(FAMILIES[family]).save(run / "model.keras")
    return run


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_exports_onnx_that_agrees_with_keras(tmp_path: Path, family: str) -> None:
    bundle = export(tiny_run(tmp_path, family), tmp_path / "bundle", tflite=False)
    card = ModelCard.load(bundle)
    done = card.exports["onnx"]
    assert done["file"] == "model.onnx" and done["opset"] == 17, done
    assert done["checked_on"] == "16 LFW faces (scikit-image)"
    assert 0.0 <= done["max_abs_diff"] < TOLERANCE
    # Independently of the export's own check: ONNX Runtime, outputs named after the heads,
    # any batch size, the same probabilities as Keras on other real faces.
    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == card.heads
    model = keras.models.load_model(bundle / "model.keras", compile=False)
    faces = lfw_batch(card)[::-1][:5].copy()
    reference = keras_outputs(model, faces, card.heads)
    for n in (1, 5):
        outs = session.run(None, {session.get_inputs()[0].name: faces[:n]})
        for head, out in zip(card.heads, outs, strict=True):
            assert out.shape == (n, 4)
            np.testing.assert_allclose(out, reference[head][:n], atol=TOLERANCE, err_msg=head)


def test_recurrent_family_whose_tflite_litert_cannot_run_has_onnx(tmp_path: Path) -> None:
    """The CNN-LSTM's .tflite needs Select TensorFlow ops (no LiteRT on the Jetson runs it): the card
    says so, and its model.onnx is the format the Jetson runs."""
    card = ModelCard.load(export(tiny_run(tmp_path, "cnn_lstm"), tmp_path / "bundle"))
    assert card.exports["tflite"]["error"].startswith("LiteRT cannot run it: Select TensorFlow op(s)")
    assert "max_abs_diff" not in card.exports["tflite"]
    assert card.exports["onnx"]["max_abs_diff"] < TOLERANCE


def test_multitask_heads_keep_their_names_when_outputs_are_reordered(tmp_path: Path) -> None:
    # Outputs in another order than the card's heads: the ONNX outputs still carry the right head.
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    heads = ["boredom", "engagement", "confusion", "frustration"]
    outs = {h: keras.layers.Dense(4, activation="softmax", name=h)(x) for h in heads}
    model = keras.Model(inputs, [outs[h] for h in reversed(heads)])
    from training.export import keras_order
    from training.onnx_export import onnx_outputs, to_onnx
    order = keras_order(model, heads)
    assert order == [3, 2, 1, 0]
    to_onnx(model, tmp_path / "m.onnx", heads, order)
    x = lfw_batch(ModelCard(name="t", kind="multitask", input={"size": [16, 16], "channels": 3},
                            preprocessing="mobilenet_v2", heads=heads))
    got = onnx_outputs(tmp_path / "m.onnx", x)
    reference = keras_outputs(model, x, heads)
    assert list(got) == heads
    for head in heads:
        np.testing.assert_allclose(got[head], reference[head], atol=TOLERANCE)


def test_mixed_precision_run_exports_a_float32_bundle(tmp_path: Path) -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")  # as `train --precision mixed_float16` leaves it
    try:
        run = tiny_run(tmp_path, "multitask")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    trained = keras.models.load_model(run / "model.keras", compile=False)
    assert "mixed_float16" in {layer.dtype_policy.name for layer in trained._flatten_layers()}
    bundle = export(run, tmp_path / "bundle", tflite=False)
    model = keras.models.load_model(bundle / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {"float32"}
    assert ModelCard.load(bundle).exports["onnx"]["max_abs_diff"] < TOLERANCE
    heads = ModelCard.load(bundle).heads
    faces = lfw_batch(ModelCard.load(bundle))
    mixed = keras_outputs(trained, faces, heads)
    for head, out in keras_outputs(model, faces, heads).items():  # the same model, less float16 rounding
        np.testing.assert_allclose(out, np.asarray(mixed[head], np.float32), atol=2e-3, err_msg=head)


def test_cli_prints_the_difference_and_no_onnx_skips_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tiny_run(tmp_path, "cnn")
    assert main(["export", "--run", str(run), "--bundle", str(tmp_path / "b1")]) == 0
    out = capsys.readouterr().out
    assert "onnx: model.onnx, max difference from Keras" in out and "tflite: model.tflite" in out
    assert ModelCard.load(tmp_path / "b1").exports["tflite"]["max_abs_diff"] < TOLERANCE
    assert main(["export", "--run", str(run), "--bundle", str(tmp_path / "b2"), "--no-onnx", "--no-tflite"]) == 0
    assert not (tmp_path / "b2" / "model.onnx").exists() and ModelCard.load(tmp_path / "b2").exports == {}


def test_export_of_a_missing_run_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "--run", str(tmp_path / "no-such-run"), "--bundle", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "export failed" in err and "Traceback" not in err
