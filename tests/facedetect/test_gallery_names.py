"""GALLERY_NAMES=ocr: the tiles' name labels keep students' ids across a reflow, on real frames of a
labelled gallery video (real faces, names drawn as Zoom and Teams draw them, MJPG-encoded and
decoded), through the real facedetect service, its ZeroMQ sockets and Redis."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from services.facedetect.gallery import same_name
from shared.bus.messages import as_dict
from shared.data.roster import TileNames, name_key
from tests.support.env import REDIS_URL
from tests.support.gallery import SIZE, run_facedetect
from tools.footage import read_video
from tools.gallery_video import Participant, _faces, layout_at, render

pytest.importorskip("rapidocr_onnxruntime", reason="GALLERY_NAMES=ocr needs the ocr extra (scripts/setup.sh)")
pytestmark = pytest.mark.timeout(300)


def _recorded(frames: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """The frames as a screen recording gives them back: MJPG-encoded, then decoded."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, SIZE)
    for frame in frames:
        writer.write(frame)
    writer.release()
    out, _ = read_video(path)
    assert len(out) == len(frames)
    return out


def test_two_participants_who_swap_places_on_a_reflow_keep_their_ids_by_name(tmp_path):
    """Li Wei and Kenji Tanaka show the same picture (one camera image for both: their look cannot
    tell them apart); a newcomer joins, the grid reflows from 2x3 to 3x3, and the call puts the two
    in each other's place. Their names keep their ids."""
    faces = _faces()
    before = [Participant(n, face=f) for n, f in (("Maria Garcia", 0), ("Li Wei", 7), ("Anna Kowalska", 14),
                                                   ("Priya Sharma", 21), ("Kenji Tanaka", 7), ("Ahmed Hassan", 28))]
    after = [before[0], before[4], before[2], before[3], before[1], before[5], Participant("Grace Mensah", face=35)]
    frames = _recorded([render(before, 0.0, SIZE, faces, rooms=True)] * 2
                       + [render(after, 0.0, SIZE, faces, rooms=True)] * 2, tmp_path / "swap.avi")
    prefix = f"test-names-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        got = run_facedetect(frames, gallery_names="ocr", redis_url=REDIS_URL, redis_prefix=prefix)
        saved = TileNames(client, prefix).load("gallery", ["screen"])
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
    ids: dict[str, set[int]] = {}
    for people, msg in zip([before, before, after, after], got, strict=True):
        layout = layout_at(people, 0.0)
        assert len(msg.header.faces) == len(layout)
        for face in msg.header.faces:
            x, y, w, h = face["box"]
            cx, cy = x + w / 2, y + h / 2
            person = next(p for p, (tx, ty, tw, th) in layout if tx <= cx < tx + tw and ty <= cy < ty + th)
            ids.setdefault(person.name, set()).add(face["student"])
    assert all(len(s) == 1 for s in ids.values()), ids
    assert len({next(iter(s)) for s in ids.values()}) == 7
    # The labels read are on the box (Redis), each the name of the participant with that id...
    by_id = {next(iter(s)): name for name, s in ids.items()}
    assert len(saved) == 7
    for (_, student), label in saved.items():
        assert same_name(name_key(label), name_key(by_id[student])), (label, by_id[student])
    # ... and never on the bus.
    bus = json.dumps([as_dict(msg.header) for msg in got], default=str)
    assert not any(name.split()[0] in bus for name in ids)



@pytest.mark.parametrize("names", ["ocr", "off"])
def test_cameras_off_keep_their_ids_through_a_reflow_by_name_only(tmp_path, names):
    """Two participants with their cameras off (plain tiles: no face, no look) while the grid
    reflows from 2x3 to 3x3 and the call swaps their places: by tile place and look they are new
    students (off), by their name labels they keep their ids (ocr)."""
    from services.facedetect.gallery import TileTracker, find_tiles
    from services.facedetect.names import LabelReader

    faces = _faces()
    off = (0.0, 1.0)
    before = [Participant("Maria Garcia", 0), Participant("Li Wei", 7, away=off), Participant("Anna Kowalska", 14),
              Participant("Priya Sharma", 21), Participant("Kenji Tanaka", 42, away=off),
              Participant("Ahmed Hassan", 28)]
    after = [before[0], before[4], before[2], before[3], before[1], before[5], Participant("Grace Mensah", 35)]
    people = [before, before, after, after]
    frames = _recorded([render(p, 0.0, SIZE, faces, rooms=True) for p in people], tmp_path / "off.avi")
    reader = LabelReader() if names == "ocr" else None
    tracker = TileTracker()
    ids: dict[str, set[int]] = {}
    for k, (image, present) in enumerate(zip(frames, people, strict=True)):
        tiles = find_tiles(image)
        layout = layout_at(present, 0.0)
        assert len(tiles) == len(layout)
        labels = [reader.read(image, tile) for tile in tiles] if reader else None
        got = tracker.update(("s", "c"), image, tiles, [p.away is None for p, _ in layout], float(k), labels)
        for (person, _), sid in zip(layout, got, strict=True):
            ids.setdefault(person.name, set()).add(sid)
    cameras_off = [ids["Li Wei"], ids["Kenji Tanaka"]]
    if names == "ocr":
        assert all(len(s) == 1 for s in ids.values()), ids
        assert len({next(iter(s)) for s in ids.values()}) == 7
        assert tracker.names(("s", "c"))[next(iter(ids["Li Wei"]))] in ("Li Wei", "LiWei")
    else:
        assert all(len(s) == 2 for s in cameras_off), ids  # the reason to read names


def test_redis_down_the_names_still_key_the_ids_and_the_failure_is_counted(tmp_path):
    """No Redis where REDIS_URL points: facedetect says so, counts it, and the ids go on."""
    from services.facedetect.service import NAME_STORE_ERRORS
    from shared.ops.ports import free_ports
    from tests.support.metrics import counter

    faces = _faces()
    people = [Participant(n, face=f) for n, f in (("Maria Garcia", 0), ("Li Wei", 7), ("Anna Kowalska", 14))]
    frames = _recorded([render(people, 0.0, SIZE, faces, rooms=True)] * 3, tmp_path / "down.avi")
    before = counter(NAME_STORE_ERRORS, "facedetect")
    (port,) = free_ports(1)
    got = run_facedetect(frames, gallery_names="ocr", redis_url=f"redis://127.0.0.1:{port}/0")
    assert [sorted(f["student"] for f in m.header.faces) for m in got] == [[1, 2, 3]] * 3
    assert counter(NAME_STORE_ERRORS, "facedetect") - before == 1  # then not again before 10 s
