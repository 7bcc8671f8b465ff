"""Stable student ids across frames: one person is one student, a passing detection is none.

Following: at 2 FPS a face moves little between samples, so a face overlapping (IoU) or close
to one seen in the previous frame is the same face; no look is needed for that.

Coming back: a face lost for a while (a turn, a sneeze, hands over it, leaving the frame) is
recognised by its look (appearance.py) when it returns: anywhere in the frame if it looks like
a lost student (within `reid_seconds`), or where it was (within `max_age`) unless it looks like
someone else. Each track keeps a few looks from different moments, so a turned head still
matches one of them. Two people who leave and come back in each other's places get their own
ids back; a newcomer in a leaver's seat gets a new one.

Becoming a student: a new face is tentative (a negative id) until it has been seen for
`min_seconds`; only then does it get the next student id, unless the looks it has taken meanwhile
(one a frame while tentative) say it is a student lost before it came: a face coming out from
behind a hand first looks like nobody, and a look taken as the hand went had made one person two
students (a decoder's rounding decided it). A tentative face that goes away
sooner (a hand raised to the face, a face on a T-shirt passing by) is set aside, as is at
once one whose crop the face mesh does not take for a face. `take_resolutions` tells the
caller what became of each tentative id (its student id, or None), so the frames it was held
back in can be sent with the right id or without it (holdback.py). `min_seconds` = 0 makes
every face a student at once (the tracker before this rule).

Times are media time when the source has it, capture time otherwise. Ids are per (session,
stream) and start at 1, from a numbering the service shares with the gallery's tiles
(student_ids.py); `finish` ends a stream (its tentative faces are set aside), `reset` forgets it
and its numbering.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from services.facedetect.appearance import Look, distance
from services.facedetect.student_ids import StudentIds

Box = tuple[int, int, int, int]  # x, y, w, h

# Look distances (appearance.distance), measured on real faces (skimage's astronaut at 4 sizes,
# 30 lfw_subset faces, a real person turning and talking through carphone_pristine.mp4): the same
# person measured at most 0.18, different people 0.17 at the 5th percentile and 0.23 at the median.
SAME_LOOK = 0.19  # at most this: the same person, wherever the face comes back
OTHER_LOOK = 0.21  # over this: someone else, even in the lost student's place
MIN_FACE_SCORE = 0.5  # the face mesh's presence score under which a new detection is no face
LOOKS_KEPT = 6  # looks per track, from different moments
LOOK_EVERY = 2.0  # seconds between two looks added to a followed track (at least)
# A face mesh a look: the refreshes of followed faces' looks are spread over frames, the oldest
# first, so a frame of 8 faces pays one mesh, not 8 every LOOK_EVERY (at 2 FPS each face's look is
# then renewed every 4 s, its LOOKS_KEPT looks spanning 24 s). New faces, faces back after a gap
# and set-aside ones get their look at once, as before.
REFRESHES_PER_FRAME = 1
SET_ASIDE_MEMORY = 2.0  # seconds a set-aside detection's place is kept: a hand that flickers counts once


def iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def reading_order(boxes: list[Box]) -> list[int]:
    """Indexes of `boxes` row by row (a box whose top is within half a face of the row's first
    top is in that row), left to right within a row."""
    rows: list[list[int]] = []
    for i in sorted(range(len(boxes)), key=lambda i: boxes[i][1]):
        if rows and boxes[i][1] - boxes[rows[-1][0]][1] < boxes[rows[-1][0]][3] / 2:
            rows[-1].append(i)
        else:
            rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda i: boxes[i][0])]


def centre_distance(a: Box, b: Box) -> float:
    """Distance between box centres, in units of the larger box side."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return float((dx * dx + dy * dy) ** 0.5) / max(1, a[2], a[3], b[2], b[3])


def _similar_size(a: Box, b: Box) -> bool:
    """Boxes of one face in two frames: a box that grew or shrank much may be something else."""
    ratio = (a[2] * a[3]) / max(1, b[2] * b[3])
    return 0.6 <= ratio <= 1.6


@dataclass
class Track:
    student: int  # > 0 a student; < 0 tentative
    box: Box
    last_seen: float
    first_seen: float = 0.0
    looks: list[Look] = field(default_factory=list)
    look_at: float = -1e9  # when the last look was added

    def look_distance(self, look: Look) -> float | None:
        return min((distance(look, mine) for mine in self.looks), default=None)

    def add_look(self, look: Look, t: float) -> None:
        self.looks = [*self.looks[-(LOOKS_KEPT - 1):], look]
        self.look_at = t


@dataclass
class SetAside:
    """A tentative face that never became a student."""

    reason: str  # "short_lived" (seen under min_seconds) or "not_a_face" (the face mesh's word)
    seconds: float  # how long it was seen


@dataclass
class _StreamTracks:
    tracks: dict[int, Track] = field(default_factory=dict)
    next_tentative: int = -1
    last_t: float | None = None
    resolutions: dict[int, int | None] = field(default_factory=dict)  # tentative id -> student or None
    set_aside: list[SetAside] = field(default_factory=list)


LooksOf = Callable[[list[int]], list[Look]]  # looks of the boxes at these indexes


class Tracker:
    def __init__(self, min_iou: float = 0.3, max_age: float = 10.0, max_centre_distance: float = 0.5,
                 reid_seconds: float = 10.0, min_seconds: float = 0.0, ids: StudentIds | None = None) -> None:
        self.min_iou = min_iou
        self.max_age = max_age
        # A second, looser pass for faces that moved more than their overlap allows (a jump
        # between two 2 FPS samples): close centres, only among faces left unmatched.
        self.max_centre_distance = max_centre_distance
        self.reid_seconds = reid_seconds
        self.min_seconds = min_seconds
        # Student ids (not tentative ones): shared with the gallery's tile tracker (student_ids.py).
        self.ids = ids if ids is not None else StudentIds()
        self.streams: dict[tuple[str, str], _StreamTracks] = {}

    def update(self, key: tuple[str, str], boxes: list[Box], t: float, looks_of: LooksOf | None = None) -> list[int]:
        """Id of each box (same order): a student's (> 0), or a tentative face's (< 0)."""
        state = self.streams.setdefault(key, _StreamTracks())
        if state.last_t is not None and t < state.last_t - max(self.max_age, self.reid_seconds):
            self._end_tentative(state)  # time jumped far back: a new recording on the same stream id
            state.tracks.clear()
        previous_t, state.last_t = state.last_t, t
        self._expire(state, t, 0.0 if previous_t is None else t - previous_t)

        ids: list[int | None] = [None] * len(boxes)
        # Following: faces seen in the previous frame, by overlap then by close centres.
        recent = {sid for sid, tr in state.tracks.items() if tr.last_seen == previous_t}
        self._follow(boxes, state, recent, ids)

        looks: dict[int, Look] = {}
        if looks_of is not None:
            due = self._looks_due(state, boxes, ids, t)
            looks = dict(zip(due, looks_of(due), strict=True)) if due else {}
        # What the face mesh does not take for a face (a hand over the face, followed or not) is
        # nobody: it is set aside below, and the student it covered is lost for this frame.
        not_faces = {i for i, look in looks.items() if look.face_score < MIN_FACE_SCORE}
        for i, sid in enumerate(ids):
            dropped = sid is not None and self._dropped(state, sid)
            # Not a face: unless it is the set-aside hand followed, it is set aside now. A face where
            # a set-aside hand was (the hand went down) is someone to find again, not the hand.
            if (i in not_faces and not dropped) or (dropped and i in looks and i not in not_faces):
                ids[i] = None
        self._come_back(boxes, state, ids, looks, t, not_faces)
        # A set-aside hand that flickers (lost for a frame, found again) is the same hand, counted once.
        for i in not_faces:
            if ids[i] is None:
                ids[i] = next((sid for sid, tr in state.tracks.items() if self._dropped(state, sid)
                               and sid not in ids and iou(boxes[i], tr.box) >= self.min_iou), None)

        new = [i for i in reading_order(boxes) if ids[i] is None]
        for i in new:
            if self.min_seconds <= 0 and i not in not_faces:
                ids[i] = self.ids.take(key)
            else:
                ids[i] = state.next_tentative
                state.next_tentative -= 1
        for i, box in enumerate(boxes):
            sid = ids[i]
            assert sid is not None
            track = state.tracks.get(sid) or Track(sid, box, t, first_seen=t)
            track.box, track.last_seen = (int(box[0]), int(box[1]), int(box[2]), int(box[3])), t
            if i in looks:
                track.add_look(looks[i], t)
            state.tracks[sid] = track
            if i in not_faces and i in new and not self._dropped(state, sid):
                self._set_aside(state, track, "not_a_face")
        self._confirm(key, state, t, ids)
        return [int(i) for i in ids if i is not None]  # every face has its id by now (asserted above)

    def _looks_due(self, state: _StreamTracks, boxes: list[Box], ids: list[int | None], t: float) -> list[int]:
        """Faces whose look is computed now (a face mesh each): a face not followed from the last frame
        (new, or back after a gap), a set-aside one, one whose box jumped in size; and of the followed
        faces whose last look is LOOK_EVERY old, REFRESHES_PER_FRAME, the oldest looks first."""
        needed: list[int] = []
        stale: list[tuple[float, int]] = []  # (when its last look was taken, index)
        for i, sid in enumerate(ids):
            if sid is None or self._dropped(state, sid) or not _similar_size(boxes[i], state.tracks[sid].box):
                needed.append(i)
            elif sid < 0 and sid not in state.resolutions:
                needed.append(i)  # tentative: a look a frame, for _confirm to see who it is (rare, brief)
            elif t - state.tracks[sid].look_at >= LOOK_EVERY:
                stale.append((state.tracks[sid].look_at, i))
        return sorted(needed + [i for _, i in sorted(stale)[:REFRESHES_PER_FRAME]])

    def _follow(self, boxes: list[Box], state: _StreamTracks, recent: set[int], ids: list[int | None]) -> None:
        free = set(recent)
        pairs = sorted(((iou(box, state.tracks[sid].box), i, sid) for i, box in enumerate(boxes)
                        for sid in free), reverse=True)
        for score, i, sid in pairs:
            if score < self.min_iou:
                break
            if ids[i] is None and sid in free:
                ids[i] = sid
                free.discard(sid)
        near = sorted((centre_distance(boxes[i], state.tracks[sid].box), i, sid)
                      for i in range(len(boxes)) if ids[i] is None for sid in free)
        for dist, i, sid in near:
            if dist > self.max_centre_distance:
                break
            if ids[i] is None and sid in free:
                ids[i] = sid
                free.discard(sid)

    def _come_back(self, boxes: list[Box], state: _StreamTracks, ids: list[int | None], looks: dict[int, Look],
                   t: float, not_faces: set[int]) -> None:
        """Faces not followed, matched with lost tracks: by look first, by place unless the look says no."""
        taken = {sid for sid in ids if sid is not None}
        candidates = []
        for i, box in enumerate(boxes):
            if ids[i] is not None or i in not_faces:
                continue
            look = looks.get(i)
            for sid, track in state.tracks.items():
                if sid in taken or track.student < 0 and sid in state.resolutions:
                    continue
                gone = t - track.last_seen
                d = track.look_distance(look) if look is not None else None
                here = (iou(box, track.box) >= self.min_iou
                        or centre_distance(box, track.box) <= self.max_centre_distance)
                by_look = d is not None and d <= SAME_LOOK and gone <= self.reid_seconds
                by_place = here and gone <= self.max_age and (d is None or d <= OTHER_LOOK)
                if by_look or by_place:
                    # Place and look agreeing first (people who look alike, twins or one picture
                    # shown many times, keep their own seats), then the nearest look; a place
                    # match without a look ranks as a borderline look.
                    agree = here and d is not None and d <= SAME_LOOK
                    candidates.append((0 if agree else 1, OTHER_LOOK if d is None else d, 0 if here else 1, i, sid))
        for *_, i, sid in sorted(candidates):
            if ids[i] is None and sid not in taken:
                ids[i] = sid
                taken.add(sid)

    def _expire(self, state: _StreamTracks, t: float, interval: float) -> None:
        keep_students = max(self.max_age, self.reid_seconds)
        # A tentative face missing for longer than it had to live is gone (at a low frame rate:
        # missing from more than one frame).
        keep_tentative = max(self.min_seconds, 1.5 * interval)
        for sid, track in list(state.tracks.items()):
            gone = t - track.last_seen
            if sid < 0 and sid not in state.resolutions and gone > keep_tentative:
                self._set_aside(state, track, "short_lived")
            keep = keep_students if sid > 0 else keep_tentative
            if self._dropped(state, sid):
                keep = max(keep, SET_ASIDE_MEMORY)
            if gone > keep:
                del state.tracks[sid]

    def _confirm(self, key: tuple[str, str], state: _StreamTracks, t: float, ids: list[int | None]) -> None:
        """Tentative faces seen for min_seconds become students: a lost student their looks say they are
        (_lost_student), else a new one (numbered in reading order)."""
        due = [sid for sid, tr in state.tracks.items() if sid < 0 and sid not in state.resolutions
               and tr.last_seen == t and t - tr.first_seen >= self.min_seconds]
        boxes = [state.tracks[sid].box for sid in due]
        for k in reading_order(boxes):
            tentative = due[k]
            track = state.tracks.pop(tentative)
            lost = self._lost_student(state, track, ids)
            if lost is not None:  # that student, back: where the face is now, with the looks it took
                student = state.tracks[lost]
                student.box, student.last_seen = track.box, track.last_seen
                for look in track.looks:
                    student.add_look(look, track.look_at)
                track = student
            else:
                track.student = self.ids.take(key)
                state.tracks[track.student] = track
            state.resolutions[tentative] = track.student
            ids[:] = [track.student if sid == tentative else sid for sid in ids]

    def _lost_student(self, state: _StreamTracks, track: Track, ids: list[int | None]) -> int | None:
        """The student lost before the tentative `track` appeared whom its looks match, as _come_back
        matches a face on its return, with every look it took (a hand's last frame over the face said
        "nobody"; the frames after it, the face's own): None if none does."""
        candidates = []
        for sid, student in state.tracks.items():
            if sid < 0 or sid in ids or student.last_seen > track.first_seen:
                continue  # tentative, in this frame, or still seen when the tentative face came
            gone = track.first_seen - student.last_seen
            d = min((d for look in track.looks if (d := student.look_distance(look)) is not None), default=None)
            here = (iou(track.box, student.box) >= self.min_iou
                    or centre_distance(track.box, student.box) <= self.max_centre_distance)
            by_look = d is not None and d <= SAME_LOOK and gone <= self.reid_seconds
            by_place = here and d is not None and d <= OTHER_LOOK and gone <= self.max_age
            if by_look or by_place:
                candidates.append((0 if here and by_look else 1, d, sid))
        return min(candidates)[2] if candidates else None

    @staticmethod
    def _dropped(state: _StreamTracks, sid: int) -> bool:
        return sid < 0 and sid in state.resolutions and state.resolutions[sid] is None

    def _set_aside(self, state: _StreamTracks, track: Track, reason: str) -> None:
        state.resolutions[track.student] = None
        state.set_aside.append(SetAside(reason, track.last_seen - track.first_seen))

    def _end_tentative(self, state: _StreamTracks) -> None:
        for sid, track in state.tracks.items():
            if sid < 0 and sid not in state.resolutions:
                self._set_aside(state, track, "short_lived")

    def take_resolutions(self, key: tuple[str, str]) -> tuple[dict[int, int | None], list[SetAside]]:
        """What became of tentative ids since the last call ({id: student or None}), and the faces set aside."""
        state = self.streams.get(key)
        if state is None:
            return {}, []
        done, set_aside = state.resolutions, state.set_aside
        # A resolved tentative id stays known while its track may still be matched (it is gone after that).
        state.resolutions = {sid: r for sid, r in done.items() if r is None and sid in state.tracks}
        state.set_aside = []
        return done, set_aside

    def finish(self, key: tuple[str, str]) -> None:
        """The stream ended: its tentative faces are set aside (take_resolutions says so)."""
        state = self.streams.get(key)
        if state is not None:
            self._end_tentative(state)
            state.tracks = {sid: tr for sid, tr in state.tracks.items() if sid > 0}

    def reset(self, key: tuple[str, str]) -> None:
        self.streams.pop(key, None)
        self.ids.reset(key)
