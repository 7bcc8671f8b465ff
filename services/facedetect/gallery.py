"""Gallery mode: a video call's participant grid, one student per tile.

`find_tiles` (grid.py) finds the grid: call apps draw camera tiles as same-sized rectangles
on a plain background. No such set of rectangles = no grid, and facedetect falls back to
plain face detection.

`TileTracker` gives each tile a student id. While the grid stays put, a tile keeps its id by
position (even when its face is gone for a while). When the grid reflows (someone joins
or leaves and every tile moves and shrinks), ids follow the participants by what their
tiles look like: each tile scaled to a small fixed size is compared with the signatures
of the tiles seen before. With GALLERY_NAMES=ocr the tiles' name labels (services/facedetect/
names.py) come first: a reflowed tile whose label reads as a known participant's name is that
participant's, whatever it looks like; then look, then place.

Faces are searched in the whole frame first (res10 finds the faces of a 5x5 grid at
1920x1080 when they fill their tile); a tile left without a face is searched again at its
own scale, which finds the smaller faces of a participant who sits back from the camera.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from services.facedetect.grid import Box
from services.facedetect.grid import find_tiles as find_tiles  # the grid search, imported from here too
from services.facedetect.student_ids import StudentIds
from services.facedetect.tracker import iou
from shared.data.roster import name_key

SIGNATURE_SIZE = (16, 16)
SAME_TILE_IOU = 0.7
SAME_PERSON_CORRELATION = 0.6


def _edits(a: str, b: str) -> int:
    """Levenshtein distance (names are short: the plain table is fast enough)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def same_name(a: str | None, b: str | None) -> bool:
    """Two name keys of one participant: equal, or one OCR slip apart ("rn" read as "m": two
    edits in "fernandez"), a quarter of the letters at most."""
    if not a or not b:
        return False
    return a == b or _edits(a, b) <= min(len(a), len(b)) // 4


def signature(image: np.ndarray, tile: Box) -> np.ndarray:
    """The tile scaled to a small fixed size, zero-mean and unit-norm: comparable across tile sizes."""
    x, y, w, h = tile
    # The middle of the tile, where the face is: the tile's plain fill and the name label at the
    # bottom look alike in every tile and would make everyone similar.
    patch = image[y + int(h * 0.1):y + int(h * 0.8), x + int(w * 0.3):x + int(w * 0.7)]
    gray = cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY) if patch.ndim == 3 else patch
    small = cv2.resize(gray, SIGNATURE_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 1e-6 else small


@dataclass
class TileTrack:
    student: int
    tile: Box
    signature: np.ndarray
    last_seen: float
    faced: bool = False  # its signature was taken with a face in the tile
    name: str | None = None  # the tile's name label as first read (GALLERY_NAMES=ocr)

    @property
    def key(self) -> str | None:
        return name_key(self.name) if self.name else None


@dataclass
class _StreamTiles:
    tracks: dict[int, TileTrack] = field(default_factory=dict)
    last_tiles: list[Box] = field(default_factory=list)
    last_ids: list[int] = field(default_factory=list)


class TileTracker:
    """Student id per tile, per (session, stream); ids start at 1, from a numbering the service
    shares with the plain frames' tracker (student_ids.py)."""

    def __init__(self, max_age: float = 10.0, ids: StudentIds | None = None) -> None:
        self.max_age = max_age
        self.ids = ids if ids is not None else StudentIds()
        self.streams: dict[tuple[str, str], _StreamTiles] = {}
        self.reflows = 0  # frames where tiles were matched by appearance because the grid moved

    def update(self, key: tuple[str, str], image: np.ndarray, tiles: list[Box], has_face: list[bool],
               t: float, names: list[str | None] | None = None) -> list[int]:
        """The student id of each tile. `names`: each tile's label read in this frame, None where
        it was not read (labels are read only now and then) or did not read as a name."""
        state = self.streams.setdefault(key, _StreamTiles())
        names = names if names is not None else [None] * len(tiles)
        keys = [name_key(n) if n else None for n in names]
        for sid in [s for s, tr in state.tracks.items() if t - tr.last_seen > self.max_age]:
            del state.tracks[sid]
        sigs = [signature(image, tile) for tile in tiles]
        ids: list[int | None] = [None] * len(tiles)
        free = set(state.tracks)
        if (self._same_grid(state, tiles) and self._same_people(state, sigs, has_face)
                and self._same_names(state, keys)):
            # The grid did not move: the same place is the same participant, face or not.
            for i in range(len(tiles)):
                ids[i] = state.last_ids[i]
                free.discard(state.last_ids[i])
        elif free:
            # The grid reflowed (someone joined or left: tiles moved and resized): follow each
            # participant by the look of their tile, best matches first.
            self.reflows += 1
            self._match_reflowed(state, tiles, sigs, keys, ids, free)
        return self._record(key, state, tiles, sigs, has_face, names, ids, t)

    @staticmethod
    def _match_reflowed(state: _StreamTiles, tiles: list[Box], sigs: list[np.ndarray], keys: list[str | None],
                        ids: list[int | None], free: set[int]) -> None:
        """Fill `ids` of a grid that moved: by name label, then by look, then by place."""
        # The name label first: the same name is the same participant, however they look now.
        for i, k in enumerate(keys):
            match = next((s for s in sorted(free, key=lambda s: state.tracks[s].key != k)
                          if same_name(k, state.tracks[s].key)), None)
            if match is not None:
                ids[i] = match
                free.discard(match)

        def other_name(i: int, s: int) -> bool:  # both names known, and not the same: not this one
            return bool(keys[i] and state.tracks[s].key and not same_name(keys[i], state.tracks[s].key))

        scores = sorted(((float(sigs[i] @ state.tracks[s].signature), i, s)
                         for i in range(len(tiles)) for s in free), reverse=True)
        for score, i, s in scores:
            if score < SAME_PERSON_CORRELATION:
                break
            if ids[i] is None and s in free and not other_name(i, s):
                ids[i] = s
                free.discard(s)
        # A tile that looks like nobody (a head turned aside as the grid moved) keeps the place's id.
        for i, tile in enumerate(tiles):
            place = next((s for s in free if iou(tile, state.tracks[s].tile) >= SAME_TILE_IOU
                          and not other_name(i, s)), None)
            if ids[i] is None and place is not None:
                ids[i] = place
                free.discard(place)

    def _record(self, key: tuple[str, str], state: _StreamTiles, tiles: list[Box], sigs: list[np.ndarray],
                has_face: list[bool], names: list[str | None], ids: list[int | None], t: float) -> list[int]:
        """Number the tiles still without an id, and remember every tile's track; the ids."""
        assigned: list[int] = []
        for i, tile in enumerate(tiles):
            given = ids[i]
            if given is None:
                given = ids[i] = self.ids.take(key)
            assigned.append(given)
            track = state.tracks.get(given)
            # Keep the look of the participant with a face: a stretch away must not overwrite it.
            keep_old = track is not None and track.faced and not has_face[i]
            # The name as first read stays (a later read may differ by an OCR slip).
            name = track.name if track is not None and track.name else names[i]
            state.tracks[given] = TileTrack(given, tile, track.signature if track is not None and keep_old else sigs[i],
                                          t, has_face[i] or (track.faced if track else False), name)
        state.last_tiles, state.last_ids = list(tiles), [int(i) for i in assigned]
        return list(state.last_ids)

    @staticmethod
    def _same_people(state: _StreamTiles, sigs: list[np.ndarray], has_face: list[bool]) -> bool:
        """No tile shows another participant's face: else someone left and another took the place
        in the same grid (one leaves as one joins), and every tile is matched by its look. A face
        that looks like nobody (a head turned aside) keeps its place."""
        faced = [s for s, tr in state.tracks.items() if tr.faced]
        for sig, face, sid in zip(sigs, has_face, state.last_ids, strict=True):
            if not face:
                continue
            own = float(sig @ state.tracks[sid].signature)
            other = max((float(sig @ state.tracks[o].signature) for o in faced if o != sid), default=-1.0)
            if other >= SAME_PERSON_CORRELATION and other > own:
                return False
        return True

    @staticmethod
    def _same_names(state: _StreamTiles, keys: list[str | None]) -> bool:
        """No label read in this frame says another participant sits at a place: not this place's
        own name, or (a place without one yet) another participant's."""
        for k, sid in zip(keys, state.last_ids, strict=True):
            if not k:
                continue
            own = state.tracks[sid].key
            if own and not same_name(k, own):
                return False
            if not own and any(same_name(k, tr.key) for s, tr in state.tracks.items() if s != sid):
                return False
        return True

    def names(self, key: tuple[str, str]) -> dict[int, str]:
        """The name label of each student of a stream whose label was read."""
        state = self.streams.get(key)
        return {s: tr.name for s, tr in state.tracks.items() if tr.name} if state else {}

    @staticmethod
    def _same_grid(state: _StreamTiles, tiles: list[Box]) -> bool:
        return (len(tiles) == len(state.last_tiles) > 0
                and all(iou(a, b) >= SAME_TILE_IOU for a, b in zip(tiles, state.last_tiles, strict=True))
                and all(sid in state.tracks for sid in state.last_ids))

    def reset(self, key: tuple[str, str]) -> None:
        self.streams.pop(key, None)
        self.ids.reset(key)
