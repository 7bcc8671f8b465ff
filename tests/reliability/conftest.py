"""Fixtures of the reliability tests: longer sample videos with a real face."""

from __future__ import annotations

import pytest

from tools.sample_video import make_sample_video


@pytest.fixture(scope="session")
def long_video(tmp_path_factory) -> dict:
    """30 s of 640x480 video (10 FPS keeps the file small), one real face that comes and goes.

    Played with REALTIME=1 at 2 FPS it gives 60 frames over 30 s: time to inject faults.
    """
    return make_sample_video(tmp_path_factory.mktemp("video") / "long.avi", seconds=30.0, faces=1, fps=10.0)


@pytest.fixture(scope="session")
def short_video(tmp_path_factory) -> dict:
    return make_sample_video(tmp_path_factory.mktemp("video") / "short.avi", seconds=6.0, faces=1, fps=10.0)


@pytest.fixture(scope="session")
def very_long_video(tmp_path_factory) -> dict:
    """100 s (slow variants only): long enough for the default queues to fill and level off."""
    return make_sample_video(tmp_path_factory.mktemp("video") / "very_long.avi", seconds=100.0, faces=1, fps=10.0)
