"""`engagement check`'s model check knows the ONNX engine: it passes a bundle that only ONNX Runtime
can run, and fails (as inference would stop) one that no engine here can run. Tiny real bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.launcher.checks import Context, _model
from shared.data.model_card import CARD_FILE
from tests.inference.tiny_bundles import build
from tests.support.run_settings import run_settings_with

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _check(bundle: Path, engine: str):
    return _model(Context(run_settings_with(model=str(bundle), models_dir=str(bundle.parent), engine=engine,
                                             eu_ai_act_mode=0)))


@pytest.fixture(scope="module")
def onnx_only(tmp_path_factory) -> Path:
    bundle = build("frame", tmp_path_factory.mktemp("check") / "frame", onnx=True)
    (bundle / "model.keras").unlink()  # what a Jetson gets: no Keras needed
    return bundle


def test_an_onnx_only_bundle_passes_with_onnx_and_auto(onnx_only):
    for engine in ("onnx", "auto"):
        result = _check(onnx_only, engine)
        assert result.ok and "runs with onnx" in result.detail, result


def test_no_engine_fails_the_check_with_the_fix(onnx_only, tmp_path):
    unchecked = shutil.copytree(onnx_only, tmp_path / "unchecked")
    card = json.loads((unchecked / CARD_FILE).read_text())
    card["exports"] = {}  # no export check recorded: auto cannot trust model.onnx without Keras
    (unchecked / CARD_FILE).write_text(json.dumps(card))
    result = _check(unchecked, "auto")
    assert not result.ok and "no engine here can run" in result.detail and "engagement-train export" in result.fix
    assert _check(unchecked, "onnx").ok  # asked for explicitly, it runs
    assert not _check(onnx_only, "keras").ok  # no model.keras
