"""One id numbering per stream, shared by plain frames (tracker.py) and a call's grid (gallery.py):
a stream that switches between them must never give two people one id (issue 21)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from services.facedetect.gallery import TileTracker, find_tiles
from services.facedetect.student_ids import StudentIds
from services.facedetect.tracker import Tracker
from tests.support.gallery import SIZE, run_facedetect
from tools.gallery_video import _faces, render, scenario

pytestmark = pytest.mark.timeout(300)

KEY = ("s", "screen")


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return _faces()


def test_a_screen_that_shows_a_person_then_a_call_then_the_person_keeps_every_id_apart(faces, monkeypatch):
    """The astronaut (a plain frame), a 3x3 call's grid of 8 lfw faces, the astronaut again, the grid
    again: the astronaut is one student, each participant another, and no two of them share one."""
    import services.facedetect.service as service

    monkeypatch.setattr(service, "GRID_RECHECK_SECONDS", 0.0)  # the grid searched in every frame
    plain = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    grid = render(scenario(3), 0.0, SIZE, faces)
    got = run_facedetect([plain, grid, plain, grid])
    ids = [[f["student"] for f in m.header.faces] for m in got]
    astronaut, participants = ids[0], ids[1]
    assert len(astronaut) == 1 and len(participants) == 8 == len(set(participants))
    assert astronaut[0] not in participants, ids  # main: the astronaut and a participant were both 1
    assert ids[2] == astronaut and sorted(ids[3]) == sorted(participants), ids  # each keeps their id


def test_the_tracker_and_the_tile_tracker_of_a_stream_take_ids_from_one_numbering(faces):
    numbering = StudentIds()
    tracker, tiles = Tracker(ids=numbering), TileTracker(ids=numbering)
    grid = render(scenario(3), 0.0, SIZE, faces)
    found = find_tiles(grid)
    assert tracker.update(KEY, [(10, 10, 50, 50)], 0.0) == [1]
    assert tiles.update(KEY, grid, found, [True] * len(found), 0.5) == list(range(2, 10))
    assert tracker.update(KEY, [(300, 300, 50, 50), (10, 10, 50, 50)], 1.0) == [10, 1]
    assert tracker.update(("s", "other"), [(10, 10, 50, 50)], 1.0) == [1]  # streams apart
    # The stream forgotten (an eos): its numbering starts over, the other stream's goes on.
    tracker.reset(KEY)
    tiles.reset(KEY)
    assert tiles.update(KEY, grid, found, [True] * len(found), 2.0) == list(range(1, 9))
    assert tracker.update(KEY, [(10, 10, 50, 50)], 2.5) == [9]
    assert tracker.update(("s", "other"), [(300, 300, 50, 50), (10, 10, 50, 50)], 1.5) == [2, 1]
