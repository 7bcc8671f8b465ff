"""Fixtures shared by the inference tests."""

from __future__ import annotations

import pytest

from tests.inference import off_axis


@pytest.fixture(scope="session")
def footage(tmp_path_factory) -> off_axis.Footage:
    """Real faces seen by an off-axis camera, 40 s at 2 FPS, decoded and cropped (tests/inference/off_axis.py)."""
    path = off_axis.write_footage(tmp_path_factory.mktemp("offaxis") / "off_axis.avi", off_axis.SECONDS,
                                  off_axis.FPS)
    frames = off_axis.decode_crops(path)
    assert len(frames) == int(off_axis.SECONDS * off_axis.FPS)
    return frames
