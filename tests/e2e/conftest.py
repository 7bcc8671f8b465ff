"""Fixtures for end-to-end runs: a real sample video (the launcher is in tests/support/pipeline.py)."""

from __future__ import annotations

import pytest

from tools.sample_video import make_sample_video


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory) -> dict:
    """8 s of 640x480 video at 30 FPS, one real face that leaves the frame twice."""
    return make_sample_video(tmp_path_factory.mktemp("video") / "sample.avi", seconds=8.0, faces=1)
