"""Fixtures of the launcher tests: a new user's folder with a class video in it (helpers:
tests/support/runs.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.sample_video import make_sample_video


@pytest.fixture(scope="session")
def one_face_video(tmp_path_factory) -> dict:
    """6 s, one real face (30 FPS MJPG)."""
    return make_sample_video(tmp_path_factory.mktemp("video") / "class.avi", seconds=6.0, faces=1)


@pytest.fixture()
def classroom(tmp_path: Path, one_face_video: dict) -> Path:
    """A new user's folder with a class video in it."""
    os.link(one_face_video["path"], tmp_path / "class.avi")
    return tmp_path
