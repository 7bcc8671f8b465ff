"""Session fixtures: one synthetic DAiSEE data set, extracted and face-cropped once for all training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.extract import extract
from training.faces import crop_faces
from training.manifest import fps_root
from training.synth import SynthSpec, make_synth

SPEC = SynthSpec()  # 6 / 1 / 2 persons x 7 clips x 10 s, the CLI default


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("daisee")
    make_synth(root, SPEC)
    return root


@pytest.fixture(scope="session")
def frames_root(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("frames")
    extract(synth_root, out, fps=1, progress=False)
    return out


@pytest.fixture(scope="session")
def faces_root(frames_root: Path) -> Path:
    crop_faces(fps_root(frames_root, 1), "dnn", progress=False)
    return frames_root


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")
