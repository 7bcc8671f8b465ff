"""A video-call gallery made of real faces (scikit-image's lfw_subset), with a script.

Tiles are laid out as Zoom and Teams do: the fewest columns that fit everyone
(ceil(sqrt(n))), 16:9 tiles with gaps on a dark background, and a name label as they draw
it: small white text (13 px by default) on a dark translucent box at the tile's bottom left,
over the participant's picture (with `rooms`: below the face, a strip of a real photo, their
room; off by default, because the face crops' margin takes it in and the baseline's head pose
then differs from the plain tiles the episode tests expect).
The script: participants join and leave (the grid reflows), and one steps away from the
camera for a while (the tile stays, the face goes). `layout_at` tells
the tests where every participant's tile is at any time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont, ImageFont

# Display names as people type them (accents included), one per seat of a 5x5 grid.
NAMES = ("Maria Garcia", "Li Wei", "Olusegun Adeyemi", "Anna Kowalska", "James O'Brien", "Priya Sharma",
         "Lukas Müller", "Sofia Rossi", "Ahmed Hassan", "Emma Johansson", "Kenji Tanaka", "Chloé Dubois",
         "Mateo Fernández", "Aisha Bello", "Noah Smith", "Yuki Sato", "Lars Nielsen", "Fatima Zahra",
         "Daniel Kim", "Olivia Brown", "Ivan Petrov", "Grace Mensah", "Tomás Silva", "Hannah Levi",
         "Arjun Patel")
LABEL_PX = 13  # Zoom's and Teams' name text at 100 % scaling
BACKGROUND = (30, 30, 30)  # the call's dark background
TILE = (58, 52, 48)  # a camera tile's fill around the face
GAP = 8


@dataclass(frozen=True)
class Participant:
    name: str
    face: int  # index into lfw_subset's faces (0-99)
    joins: float = 0.0  # fraction of the video
    leaves: float = 1.0
    away: tuple[float, float] | None = None  # fraction of the video with no face in the tile
    looks_away: tuple[float, float] | None = None  # fraction of the video with the head turned aside


def scenario(grid: int) -> list[Participant]:
    """grid x grid seats at most: everyone but the last is there from the start; the last joins at
    a third (the grid reflows), the second leaves at two thirds, the third steps away in between,
    the fourth looks aside from a tenth to three tenths."""
    n = grid * grid
    people = [Participant(NAMES[i % len(NAMES)], face=(i * 7) % 100) for i in range(n)]
    people[-1] = Participant(people[-1].name, people[-1].face, joins=1 / 3)
    people[1] = Participant(people[1].name, people[1].face, leaves=2 / 3)
    people[2] = Participant(people[2].name, people[2].face, away=(0.4, 0.55))
    people[3] = Participant(people[3].name, people[3].face, looks_away=(0.1, 0.3))
    return people


def grid_shape(n: int) -> tuple[int, int]:
    cols = max(1, math.ceil(math.sqrt(n)))
    return cols, max(1, math.ceil(n / cols))


def tiles(n: int, size: tuple[int, int], gap: int = GAP) -> list[tuple[int, int, int, int]]:
    """x, y, w, h of n 16:9 tiles, row by row, centred in a frame of `size` (w, h); `gap` 0: tiles
    that touch (a recorded meeting's gallery, edge to edge)."""
    if n == 0:
        return []
    cols, rows = grid_shape(n)
    width, height = size
    tw = (width - gap * (cols + 1)) / cols
    th = (height - gap * (rows + 1)) / rows
    if tw / th > 16 / 9:
        tw = th * 16 / 9
    else:
        th = tw * 9 / 16
    x0 = (width - (cols * tw + (cols - 1) * gap)) / 2
    y0 = (height - (rows * th + (rows - 1) * gap)) / 2
    out = []
    for i in range(n):
        r, c = divmod(i, cols)
        if r == rows - 1 and n % cols:  # a short last row is centred, as the calls do
            x_row = x0 + (cols - n % cols) * (tw + gap) / 2
        else:
            x_row = x0
        out.append((round(x_row + c * (tw + gap)), round(y0 + r * (th + gap)), round(tw), round(th)))
    return out


def layout_at(people: list[Participant], t: float,
              gap: int = GAP) -> list[tuple[Participant, tuple[int, int, int, int]]]:
    """Who is on the call at fraction t, with their tile (in a 1920x1080 frame)."""
    present = [p for p in people if p.joins <= t < p.leaves]
    return list(zip(present, tiles(len(present), (1920, 1080), gap), strict=True))


def everyone(grid: int) -> list[Participant]:
    """grid x grid participants, all there all the time, facing the camera."""
    return [Participant(NAMES[i % len(NAMES)], face=(i * 7) % 100) for i in range(grid * grid)]


def picture_box(tile: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """Where a 4:3 camera picture sits in a 16:9 tile that touches its neighbours: full height,
    centred, black bars left and right (a recorded meeting's gallery)."""
    x, y, w, h = tile
    pw = min(w, round(h * 4 / 3))
    return x + (w - pw) // 2, y, pw, h


def _touching_tile(frame: np.ndarray, person: Participant, tile: tuple[int, int, int, int], t: float,
                   faces: np.ndarray, footage: list[np.ndarray] | None) -> None:
    """A 4:3 camera picture (a real face, or a frame of real footage) letterboxed in its tile."""
    x, y, w, h = tile
    frame[y:y + h, x:x + w] = 0
    px, py, pw, ph = picture_box(tile)
    if footage:
        clip = footage[(person.face * 5 + round(t * len(footage))) % len(footage)]
        # The footage's own aspect kept, scaled to the picture's height and cut to its width.
        scale = ph / clip.shape[0]
        big = cv2.resize(clip, (round(clip.shape[1] * scale), ph), interpolation=cv2.INTER_CUBIC)
        cut = max(0, (big.shape[1] - pw) // 2)
        big = big[:, cut:cut + pw]
        frame[py:py + ph, px + (pw - big.shape[1]) // 2:px + (pw - big.shape[1]) // 2 + big.shape[1]] = big
        return
    frame[py:py + ph, px:px + pw] = TILE
    side = int(ph * 0.72)
    face = cv2.resize(faces[person.face], (side, side), interpolation=cv2.INTER_CUBIC)
    fy, fx = py + (ph - side) // 2, px + (pw - side) // 2
    frame[fy:fy + side, fx:fx + side] = face[:, :, None]


@functools.lru_cache(maxsize=1)
def _faces() -> np.ndarray:
    from skimage.data import lfw_subset

    return (lfw_subset()[:100] * 255).astype(np.uint8)


TURN_YAW = 60.0


@functools.lru_cache(maxsize=32)
def _turned(face_index: int, side: int) -> np.ndarray:
    """Face `face_index` of lfw_subset at `side` px, its head turned aside (as a BGR image)."""
    from tools.turned_face import mesh_points, turn_head

    face = cv2.resize(_faces()[face_index], (side, side), interpolation=cv2.INTER_CUBIC)
    margin = side // 4  # the mesh wants the face framed as facedetect crops it
    canvas = np.full((side + 2 * margin, side + 2 * margin, 3), TILE, np.uint8)
    canvas[margin:margin + side, margin:margin + side] = face[:, :, None]
    turned = turn_head(canvas, mesh_points(canvas, (0, 0, canvas.shape[1], canvas.shape[0])), TURN_YAW, 0.0)
    return turned[margin:margin + side, margin:margin + side]


@functools.lru_cache(maxsize=1)
def _rooms() -> list[np.ndarray]:
    """Real photos (BGR, 480 px wide) whose strips stand for what a camera shows below the face."""
    from skimage import data

    out = []
    for image in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket()):
        h, w = image.shape[:2]
        out.append(cv2.cvtColor(cv2.resize(image, (480, round(h * 480 / w))), cv2.COLOR_RGB2BGR))
    return out


def _room_strip(face_index: int, width: int, height: int) -> np.ndarray:
    room = _rooms()[face_index % len(_rooms())]
    y = (face_index * 37) % max(1, room.shape[0] - height)
    return cv2.resize(room[y:y + height], (width, height), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=4)
def _font(px: int) -> FreeTypeFont | ImageFont:
    from PIL import ImageFont

    # A sans-serif with accents, as the apps use (Debian's fonts-dejavu-core); else Pillow's own
    # (Latin letters without accents).
    try:
        return ImageFont.truetype("DejaVuSans.ttf", px)
    except OSError:
        try:
            return ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", px)
        except OSError:
            return ImageFont.load_default(size=px)


def draw_label(frame: np.ndarray, name: str, tile: tuple[int, int, int, int], px: int = LABEL_PX) -> None:
    """The name as the call apps draw it: white text on a dark translucent box, bottom left."""
    from PIL import Image, ImageDraw

    x, y, w, h = tile
    font = _font(px)
    left, top, right, bottom = font.getbbox(name)
    pad_x, pad_y = 6, 4
    bw, bh = min(w - 8, right + 2 * pad_x), px + 2 * pad_y
    bx, by = x + 4, y + h - 4 - bh
    box = frame[by:by + bh, bx:bx + bw]
    box[:] = (box.astype(np.uint16) * 2 // 5).astype(np.uint8)  # 60 % black over the picture
    pil = Image.fromarray(np.ascontiguousarray(box[:, :, ::-1]))
    ImageDraw.Draw(pil).text((pad_x, pad_y + (px - bottom) // 2), name, font=font, fill=(255, 255, 255))
    box[:] = np.asarray(pil)[:, :, ::-1]


def render(people: list[Participant], t: float, size: tuple[int, int], faces: np.ndarray,
           label_px: int = LABEL_PX, rooms: bool = False, touching: bool = False,
           footage: list[np.ndarray] | None = None) -> np.ndarray:
    """The call at fraction t. `touching`: tiles edge to edge, each a 4:3 picture letterboxed in
    its 16:9 tile (`footage`: real video frames as the pictures instead of lfw faces)."""
    width, height = size
    frame = np.full((height, width, 3), BACKGROUND, np.uint8)
    scale_x, scale_y = width / 1920, height / 1080
    for person, (x, y, w, h) in layout_at(people, t, 0 if touching else GAP):
        x, y, w, h = round(x * scale_x), round(y * scale_y), round(w * scale_x), round(h * scale_y)
        if touching:
            _touching_tile(frame, person, (x, y, w, h), t, faces, footage)
            draw_label(frame, person.name, (x, y, w, h), label_px)
            continue
        frame[y:y + h, x:x + w] = TILE
        if not (person.away and person.away[0] <= t < person.away[1]):
            side = int(h * 0.72)
            fx, fy = x + (w - side) // 2, y + (h - side) // 2
            if person.looks_away and person.looks_away[0] <= t < person.looks_away[1]:
                frame[fy:fy + side, fx:fx + side] = _turned(person.face, side)
            else:
                face = cv2.resize(faces[person.face], (side, side), interpolation=cv2.INTER_CUBIC)
                frame[fy:fy + side, fx:fx + side] = face[:, :, None]
        if rooms:
            below = y + (h + int(h * 0.72)) // 2  # under the face: the participant's room
            frame[below:y + h, x:x + w] = _room_strip(person.face, w, y + h - below)
        draw_label(frame, person.name, (x, y, w, h), label_px)
    return frame


def make_gallery_video(path: str | Path, grid: int = 3, seconds: float = 12.0, fps: float = 10.0,
                       size: tuple[int, int] = (1920, 1080), label_px: int = LABEL_PX,
                       rooms: bool = False, touching: bool = False,
                       footage: list[np.ndarray] | None = None) -> dict:
    """Write the scenario of a grid x grid call (`touching`: everyone there throughout, tiles edge
    to edge with 4:3 pictures, see `render`); returns what the tests need to check it."""
    people = everyone(grid) if touching else scenario(grid)
    faces = _faces()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    frames = int(seconds * fps)
    try:
        for i in range(frames):
            writer.write(render(people, i / frames, size, faces, label_px, rooms, touching, footage))
    finally:
        writer.release()
    return {"path": str(path), "people": people, "seconds": seconds, "fps": fps, "frames": frames, "size": size}
