"""Gallery mode on a video-call grid of real faces (lfw_subset), through real ZeroMQ sockets."""

from __future__ import annotations

import logging
import sys

import cv2
import numpy as np
import pytest
from skimage import data

from services.facedetect.gallery import find_tiles
from services.facedetect.service import GALLERY_FRAMES
from tests.support.gallery import SIZE, run_facedetect
from tests.support.metrics import counter
from tools.gallery_video import _faces, layout_at, render, scenario

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return _faces()


@pytest.mark.parametrize("grid", [3, 5])
def test_the_grid_is_found_tile_by_tile_and_a_plain_picture_has_none(faces, grid):
    people = scenario(grid)
    for t in (0.0, 0.4, 0.5, 0.8):
        want = [tile for _, tile in layout_at(people, t)]
        found = find_tiles(render(people, t, SIZE, faces))
        assert len(found) == len(want), t
        for a, b in zip(sorted(found), sorted(want), strict=True):
            assert max(abs(u - v) for u, v in zip(a, b, strict=True)) <= 2
    assert find_tiles(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)) == []


def test_5x5_gallery_every_face_found_with_an_id_that_follows_the_participant(faces):
    """Tiles of about 370x210 px at 1920x1080; someone joins (reflow), steps away, leaves (reflow)."""
    people = scenario(5)
    times = [0.0, 0.2, 0.34, 0.45, 0.6, 0.7, 0.9]
    got = run_facedetect([render(people, t, SIZE, faces) for t in times])
    ids: dict[str, set[int]] = {}
    for t, msg in zip(times, got, strict=True):
        layout = layout_at(people, t)
        on_camera = [(p, tile) for p, tile in layout if not (p.away and p.away[0] <= t < p.away[1])]
        aside = [p for p, _ in on_camera if p.looks_away and p.looks_away[0] <= t < p.looks_away[1]]
        # Every face, one per tile, small as they are; a head turned 60 degrees aside may be missed.
        assert len(on_camera) - len(aside) <= len(msg.header.faces) <= len(on_camera), t
        for face in msg.header.faces:
            x, y, w, h = face["box"]
            cx, cy = x + w / 2, y + h / 2
            person = next(p for p, (tx, ty, tw, th) in on_camera if tx <= cx < tx + tw and ty <= cy < ty + th)
            ids.setdefault(person.name, set()).add(face["student"])
    assert len(ids) == 25
    assert all(len(s) == 1 for s in ids.values()), {n: s for n, s in ids.items() if len(s) > 1}
    assert len({next(iter(s)) for s in ids.values()}) == 25  # no two participants share an id


def test_no_grid_falls_back_to_plain_detection(faces):
    before = counter(GALLERY_FRAMES, "facedetect", "plain")
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    (msg,) = run_facedetect([image])
    assert len(msg.header.faces) == 1 and msg.header.faces[0]["student"] == 1
    assert counter(GALLERY_FRAMES, "facedetect", "plain") - before == 1


def test_a_face_too_small_for_the_whole_frame_is_found_in_its_tile(faces):
    """Participants far from their camera: faces of about 45 px in a 5x5 grid at 1920x1080."""
    people = scenario(5)
    image = np.full((1080, 1920, 3), 30, np.uint8)
    for person, (x, y, w, h) in layout_at(people, 0.5):
        image[y:y + h, x:x + w] = (58, 52, 48)
        if not (person.away and person.away[0] <= 0.5 < person.away[1]):
            face = cv2.resize(faces[person.face], (45, 45), interpolation=cv2.INTER_CUBIC)
            image[y + 60:y + 105, x + 160:x + 205] = face[:, :, None]
    (plain,) = run_facedetect([image], gallery="off")
    (tiled,) = run_facedetect([image], gallery="auto")
    print(f"45 px faces found: whole frame {len(plain.header.faces)}, tile by tile {len(tiled.header.faces)} of 24")
    assert len(tiled.header.faces) >= 16  # of 24 on camera (lfw's 25 px faces blown up to 45 px are blurred)
    assert len(plain.header.faces) < len(tiled.header.faces) // 2


def test_one_leaving_as_another_joins_keeps_everyone_s_id(faces):
    """Same number of tiles in the same places, but the faces shifted by one: matched by look."""
    from services.facedetect.gallery import TileTracker
    from tools.gallery_video import Participant

    people = [Participant(f"P{i}", face=i * 3, leaves=0.5 if i == 1 else 1.0) for i in range(6)]
    people.append(Participant("New", face=50, joins=0.5))
    tracker = TileTracker()
    seen: dict[str, set[int]] = {}
    for k, t in enumerate((0.0, 0.25, 0.5, 0.75)):
        image = render(people, t, SIZE, faces)
        tiles = find_tiles(image)
        layout = layout_at(people, t)
        assert len(tiles) == 6
        ids = tracker.update(("s", "c"), image, tiles, [True] * len(tiles), float(k))
        for (person, _), sid in zip(layout, ids, strict=True):
            seen.setdefault(person.name, set()).add(sid)
    assert all(len(s) == 1 for s in seen.values()), seen
    assert len({next(iter(s)) for s in seen.values()}) == 7


def test_gallery_names_without_the_ocr_library_is_one_error_line_and_ids_by_tile(faces, monkeypatch, caplog):
    """GALLERY_NAMES=ocr where rapidocr-onnxruntime is not installed (an image without the ocr
    extra): one line says how to add it, and the class goes on with ids by tile place and look."""
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import now raises ImportError
    people = scenario(3)
    with caplog.at_level(logging.ERROR):
        (msg,) = run_facedetect([render(people, 0.0, SIZE, faces)], gallery_names="ocr")
    assert sorted(f["student"] for f in msg.header.faces) == list(range(1, 9))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("pip install -e '.[ocr]'" in e and "tile names are not read" in e for e in errors), errors


def _grid_search_case(faces, monkeypatch, recheck_seconds: float):
    """The real find_tiles with its calls counted, GRID_RECHECK_SECONDS set; a plain picture, a
    3x3 call's grid, and the gallery-mode frame count before."""
    import services.facedetect.service as service

    calls = [0]

    def counted(image, *args, **kwargs):  # (what the service passes on: the grey frame, full_size)
        calls[0] += 1
        return find_tiles(image, *args, **kwargs)

    monkeypatch.setattr(service, "find_tiles", counted)
    monkeypatch.setattr(service, "GRID_RECHECK_SECONDS", recheck_seconds)
    plain = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    gallery = render(scenario(3), 0.0, SIZE, faces)
    return calls, plain, gallery, counter(GALLERY_FRAMES, "facedetect", "gallery")


def test_a_stream_without_a_grid_is_not_searched_for_one_every_frame(faces, monkeypatch):
    calls, plain, gallery, before = _grid_search_case(faces, monkeypatch, 3600.0)
    got = run_facedetect([plain] * 10 + [gallery])
    assert calls[0] == 1  # the first frame only: no grid, then not again within the hour
    assert all(len(m.header.faces) == 1 for m in got[:10])
    assert counter(GALLERY_FRAMES, "facedetect", "gallery") == before


def test_a_grid_that_appears_is_found_within_the_recheck_time_of_the_frames_own_times(faces, monkeypatch):
    # Frames 0.5 s apart in media time (run_facedetect), searched once a second of it while no grid
    # shows: at t 0 and 1.0 (plain), 2.0 (the grid, which appeared at 1.5), then every frame. The
    # frames' times decide, not the machine's speed: the same frames on every run.
    calls, plain, gallery, before = _grid_search_case(faces, monkeypatch, 1.0)
    got = run_facedetect([plain] * 3 + [gallery] * 12)
    in_gallery_mode = counter(GALLERY_FRAMES, "facedetect", "gallery") - before
    assert in_gallery_mode == 11
    assert calls[0] == 2 + 12 - 1 < len(got)


def test_a_call_that_hides_its_grid_for_a_frame_is_searched_again_at_once(faces, monkeypatch):
    """A reflow can show no grid for a frame: the next frames keep gallery mode (tile ids)."""
    calls, plain, gallery, before = _grid_search_case(faces, monkeypatch, 3600.0)
    run_facedetect([gallery, gallery, plain, gallery, gallery])
    assert calls[0] == 5  # every frame searched: the stream showed a grid a moment ago
    assert counter(GALLERY_FRAMES, "facedetect", "gallery") - before == 4


def test_a_stream_showing_a_call_is_searched_at_full_size_at_once_without_the_shrunk_look(faces, monkeypatch):
    """The shrunk look only gates the full-size search; on a stream whose last search found a grid
    it cost its time before the full-size search that followed anyway. After a frame without the
    grid, the look comes back."""
    import services.facedetect.grid as grid

    looks = [0]
    may_hold_tiles = grid._may_hold_tiles

    def counted(background):
        looks[0] += 1
        return may_hold_tiles(background)

    monkeypatch.setattr(grid, "_may_hold_tiles", counted)
    calls, plain, gallery, before = _grid_search_case(faces, monkeypatch, 3600.0)
    got = run_facedetect([gallery] * 3 + [plain, gallery, gallery])
    assert calls[0] == 6  # every frame searched (a grid a moment ago) ...
    assert looks[0] == 2  # ... shrunk first at the first frame and after the plain one only
    assert counter(GALLERY_FRAMES, "facedetect", "gallery") - before == 5
    assert [len(m.header.faces) for m in got[:3]] == [len(got[4].header.faces)] * 3 == [8] * 3


def test_each_frame_is_made_grey_once_for_the_grid_search_and_the_follower(faces, monkeypatch):
    """A call's frames (grid search every frame, faces followed between searches) and a camera's
    (searched for a grid now and then, faces followed): one grey conversion a frame at most."""
    greyed: list[tuple[int, ...]] = []
    cvt_color = cv2.cvtColor

    def counted(image, code, *args, **kwargs):
        if code == cv2.COLOR_BGR2GRAY and image.shape[:2] in ((SIZE[1], SIZE[0]), (512, 512)):
            greyed.append(image.shape)
        return cvt_color(image, code, *args, **kwargs)

    monkeypatch.setattr(cv2, "cvtColor", counted)
    call = render(scenario(3), 0.0, SIZE, faces)
    run_facedetect([call] * 6, detect_every=3)
    assert len(greyed) == 6
    greyed.clear()
    run_facedetect([cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)] * 6, detect_every=3)
    assert len(greyed) == 6


def test_a_still_7x7_call_is_searched_every_detect_every_frames_and_its_faces_followed_between(faces):
    """The search was 70 % of a 7x7 call's facedetect time: between searches the faces are followed,
    every face still found in its tile, each with the id it had."""
    from services.facedetect.service import DETECT_RUNS
    from tools.gallery_video import everyone

    people = everyone(7)
    frames = [render(people, 0.0, SIZE, faces)] * 6
    searched, followed = (counter(DETECT_RUNS, "facedetect", why) for why in ("gallery", "followed"))
    got = run_facedetect(frames, detect_every=3)
    assert counter(DETECT_RUNS, "facedetect", "gallery") - searched == 2  # frames 0 and 3
    assert counter(DETECT_RUNS, "facedetect", "followed") - followed == 4
    first = {f["student"]: f["box"] for f in got[0].header.faces}
    assert len(first) >= 45  # of 49 lfw faces of ~110 px
    for msg in got[1:]:
        boxes = {f["student"]: f["box"] for f in msg.header.faces}
        assert boxes.keys() == first.keys()
        assert all(max(abs(a - b) for a, b in zip(boxes[s], first[s], strict=True)) <= 4 for s in first)


def test_a_participant_stepping_away_between_searches_is_not_followed_into_an_empty_tile(faces):
    """A face lost by the follower searches at once: the tile without a face has none in that very frame."""
    from tools.gallery_video import Participant, everyone

    people = everyone(5)
    gone = [*people[:2], Participant(people[2].name, people[2].face, away=(0.5, 1.0)), *people[3:]]
    frames = [render(people, 0.0, SIZE, faces), render(gone, 0.6, SIZE, faces)]
    first, second = run_facedetect(frames, detect_every=3)
    assert len(second.header.faces) == len(first.header.faces) - 1


def test_eyes_cut_out_by_skin_of_the_wall_s_grey_are_no_tiles_but_the_same_shapes_on_the_wall_are():
    """Skin with the grey level of the blue wall behind it (issue 21): in grey, only the eyes and
    brows differ from the background, two same-sized dark shapes that looked like a call's tiles. A
    call's tiles sit on its background colour; these sit on skin."""
    wall, skin, dark = (200, 110, 20), (60, 80, 130), (30, 30, 40)  # grey levels 93, 93 and 32
    face = np.full((288, 360, 3), wall, np.uint8)
    cv2.ellipse(face, (180, 170), (85, 110), 0, 0, 360, skin, -1)
    for x in (128, 192):
        face[135:165, x:x + 44] = dark
    assert find_tiles(face) == []
    on_the_wall = np.full((288, 360, 3), wall, np.uint8)
    on_the_wall[135:165, 128:172] = on_the_wall[135:165, 192:236] = dark
    assert find_tiles(on_the_wall) == [(128, 135, 44, 30), (192, 135, 44, 30)]


@pytest.fixture(scope="module")
def conversation() -> list[np.ndarray]:
    """The conversation clip (a real person before a blue wall, tests/inference/real_footage.py) at 2 FPS."""
    from services.capture.sources import FileSource
    from tests.inference import real_footage

    try:
        source = FileSource(str(real_footage.fetch("conversation")))
    except real_footage.FootageUnavailable as exc:
        pytest.skip(str(exc))
    frames: list[np.ndarray] = []
    while (frame := source.read()) is not None:
        if (frame.t_media or 0.0) + 1e-6 >= len(frames) / real_footage.FPS:  # as the capture's --fps 2
            frames.append(frame.image)
    source.release()
    return frames


def test_a_real_person_before_a_plain_wall_shows_no_grid(conversation):
    """Before issue 21's fix, 25 of these 400 frames showed a 'grid' of the eyes and brows."""
    assert len(conversation) == 400
    assert [t / 2 for t, image in enumerate(conversation) if find_tiles(image)] == []


def test_a_real_person_searched_for_a_grid_every_frame_stays_one_student(conversation, monkeypatch):
    """Around 159.5 s of the clip, where a 'grid' was found in the eyes: the face got a tile's id
    there (a second student) and the tracker saw no face in that frame."""
    import services.facedetect.service as service

    monkeypatch.setattr(service, "GRID_RECHECK_SECONDS", 0.0)
    before = counter(GALLERY_FRAMES, "facedetect", "gallery")
    got = run_facedetect(conversation[314:323])  # 157.0 to 161.0 s
    assert counter(GALLERY_FRAMES, "facedetect", "gallery") == before
    assert [len(m.header.faces) for m in got] == [1] * 9
    assert {m.header.faces[0]["student"] for m in got} == {1}
