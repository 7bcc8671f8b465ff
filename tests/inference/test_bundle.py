"""Keras bundles (tiny real models built here): engines, batching, card checks, EU AI Act mode."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from services.inference.bundle import AUTO_TOLERANCE, ENGINES, BundleError, NoEngineError, load_predictor
from shared.data.model_card import CARD_FILE, CardError
from shared.ops.card_info import main as card_info_main
from shared.ops.card_info import sequence_length_for
from tests.inference.tiny_bundles import SEQUENCE_LENGTH, build

REPO = Path(__file__).resolve().parents[2]
# Keras 3 on NumPy 2 warns from its own saving code; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
KINDS = ("frame", "sequence", "multitask")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {kind: build(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def predictors(bundles) -> dict[tuple[str, str], object]:
    """Every kind loaded with every explicit engine, once for the module (TF loads once)."""
    return {(kind, engine): load_predictor(bundles[kind], engine)
            for kind in KINDS for engine in ("keras", "tflite", "predict")}


def _crops(kind: str, n: int, side: int = 48, seed: int = 3) -> np.ndarray:
    shape = (n, SEQUENCE_LENGTH, side, side, 3) if kind == "sequence" else (n, side, side, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _edit_card(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    card = json.loads((dst / CARD_FILE).read_text())
    card.update(changes)
    (dst / CARD_FILE).write_text(json.dumps(card))
    return dst


@pytest.mark.parametrize("kind", KINDS)
def test_every_engine_predicts_and_tflite_agrees_with_keras(predictors, kind):
    crops = _crops(kind, 5)
    results = {engine: predictors[(kind, engine)].predict(crops) for engine in ("keras", "tflite", "predict")}
    heads = predictors[(kind, "keras")].card.heads
    for engine, result in results.items():
        assert predictors[(kind, engine)].engine == engine
        assert list(result) == heads
        for head, probs in result.items():
            assert probs.shape == (5, 4)
            np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
            np.testing.assert_allclose(probs, results["keras"][head], atol=AUTO_TOLERANCE, err_msg=f"{engine} {head}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("engine", ["keras", "tflite"])
def test_n_faces_in_one_call_equal_one_at_a_time(predictors, kind, engine):
    predictor = predictors[(kind, engine)]
    crops = _crops(kind, 6, side=40)
    together = predictor.predict(crops)
    for head, probs in together.items():
        alone = np.concatenate([predictor.predict(crops[i:i + 1])[head] for i in range(len(crops))])
        np.testing.assert_allclose(probs, alone, atol=1e-5)
    assert all(v.shape == (0, 4) for v in predictor.predict(crops[:0]).values())


def test_any_crop_size_and_inverted_heads(predictors, bundles):
    predictor = predictors[("multitask", "keras")]
    small, large = _crops("multitask", 2, side=20), _crops("multitask", 2, side=224)
    assert predictor.predict(small)["boredom"].shape == predictor.predict(large)["boredom"].shape == (2, 4)
    # The card says "engagement" runs the other way: its probabilities come out reversed.
    import keras

    from services.inference.preprocess import prepare

    raw = keras.models.load_model(bundles["multitask"] / "model.keras", compile=False)
    crops = _crops("multitask", 3)
    outs = dict(zip(raw.output_names, raw(prepare(crops, predictor.card)), strict=True))
    got = predictor.predict(crops)
    np.testing.assert_allclose(got["engagement"], np.asarray(outs["engagement"])[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(got["boredom"], np.asarray(outs["boredom"]), atol=1e-6)


def test_auto_picks_an_engine_that_agrees_with_keras(bundles, predictors):
    auto = load_predictor(bundles["frame"], "auto")
    assert auto.engine in ENGINES and auto.engine != "auto"
    crops = _crops("frame", 4)
    np.testing.assert_allclose(auto.predict(crops)["boredom"], predictors[("frame", "keras")].predict(crops)["boredom"],
                               atol=AUTO_TOLERANCE)


def test_bundles_that_do_not_match_their_card(bundles, tmp_path):
    frame = bundles["frame"]
    cases = {
        "input shape": _edit_card(frame, tmp_path / "size", input={"size": [64, 64], "channels": 3,
                                                                   "color": "rgb", "sequence_length": 1}),
        "card names 2 head": _edit_card(frame, tmp_path / "heads", kind="multitask", heads=["boredom", "confusion"]),
        "sequence_length 3": _edit_card(frame, tmp_path / "kind", kind="sequence",
                                        input={"size": [32, 32], "channels": 3, "color": "rgb",
                                               "sequence_length": 3}),
    }
    for expected, bundle in cases.items():
        with pytest.raises(BundleError, match=expected) as info:
            load_predictor(bundle, "keras")
        assert "\n" not in str(info.value)
    missing = shutil.copytree(frame, tmp_path / "missing")
    (missing / "model.keras").unlink()
    with pytest.raises(NoEngineError, match="model.keras is missing"):  # the service stops: no baseline instead
        load_predictor(missing, "keras")
    broken = shutil.copytree(frame, tmp_path / "broken")
    (broken / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(BundleError, match="cannot load the Keras model"):
        load_predictor(broken, "keras")
    bad_card = shutil.copytree(frame, tmp_path / "badcard")
    (bad_card / CARD_FILE).write_text('{"name": "x", "kind": "frame"')
    with pytest.raises(CardError, match="not valid JSON"):
        load_predictor(bad_card)
    with pytest.raises(CardError, match="kind"):
        load_predictor(_edit_card(frame, tmp_path / "kind2", kind="video"))


def test_eu_ai_act_mode_refuses_affect_models(bundles, tmp_path):
    with pytest.raises(BundleError, match="EU_AI_ACT_MODE.*affect=true"):
        load_predictor(bundles["frame"], "keras", eu_ai_act_mode=True)
    physical = _edit_card(bundles["frame"], tmp_path / "physical", affect=False)
    assert load_predictor(physical, "keras", eu_ai_act_mode=True).card.affect is False


def test_sequence_length_from_the_card(bundles, capsys):
    assert sequence_length_for("baseline") == 1
    assert sequence_length_for(str(bundles["sequence"])) == SEQUENCE_LENGTH
    assert sequence_length_for(bundles["frame"].name, models_dir=bundles["frame"].parent) == 1
    assert card_info_main([str(bundles["sequence"])]) == 0
    assert capsys.readouterr().out.strip() == str(SEQUENCE_LENGTH)


def test_tflite_bundle_runs_without_tensorflow(bundles, predictors, tmp_path):
    """A bundle that ships model.tflite, run with ENGINE=tflite: LiteRT only, no TF import, heads in order."""
    from services.inference.engines import convert_to_tflite, load_keras

    lite = shutil.copytree(bundles["multitask"], tmp_path / "lite")
    (lite / "model.tflite").write_bytes(convert_to_tflite(load_keras(lite / "model.keras")))
    (lite / "model.keras").unlink()  # proves the Keras file is not needed either
    crops = _crops("multitask", 3, side=40, seed=11)
    np.save(tmp_path / "crops.npy", crops)
    code = ("import json, sys, numpy as np\n"
            "from services.inference.bundle import load_predictor\n"
            f"p = load_predictor({str(lite)!r}, 'tflite')\n"
            f"out = p.predict(np.load({str(tmp_path / 'crops.npy')!r}))\n"
            "print(json.dumps({h: v.tolist() for h, v in out.items()}))\n"
            "print(p.engine, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    *_, outputs, engine_line = done.stdout.strip().splitlines()
    assert engine_line == "tflite []"
    expected = predictors[("multitask", "keras")].predict(crops)
    got = json.loads(outputs)
    assert list(got) == list(expected)
    for head in expected:
        np.testing.assert_allclose(np.array(got[head]), expected[head], atol=AUTO_TOLERANCE, err_msg=head)


def test_eu_ai_act_mode_refuses_before_loading_anything(bundles):
    """With EU_AI_ACT_MODE the affect model is never read: neither Keras nor TensorFlow gets imported."""
    code = ("import sys\n"
            "from services.inference.bundle import BundleError, load_predictor\n"
            "try:\n"
            f"    load_predictor({str(bundles['multitask'])!r}, 'auto', eu_ai_act_mode=True)\n"
            "except BundleError as exc:\n"
            "    print('refused:', exc)\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    refused, imported = done.stdout.strip().splitlines()
    assert refused.startswith("refused: EU_AI_ACT_MODE is on") and imported == "[]"
