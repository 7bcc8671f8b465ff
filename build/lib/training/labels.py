"""DAiSEE labels: read the label CSVs, find the videos, check splits, describe the levels.

DAiSEE's CSVs have quirks: the header of some files ends "Frustration " (trailing space),
ClipIDs carry the file extension ("1100011002.avi", a few ".mp4") and lines may end in CRLF.
A person is the first six digits of a ClipID and also the folder the clip sits in.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATES = ("boredom", "engagement", "confusion", "frustration")
SPLITS = ("Train", "Validation", "Test")
VIDEO_SUFFIXES = (".avi", ".mp4")
PERSON_DIGITS = 6


class LabelError(ValueError):
    """A label file that cannot be used as it is: the message says which file, line and why."""


@dataclass(frozen=True)
class Clip:
    clip_id: str  # without extension, e.g. "1100011002"
    person: str
    split: str
    levels: tuple[int, int, int, int]  # boredom, engagement, confusion, frustration

    @property
    def boredom(self) -> int:
        return self.levels[0]

    def level(self, state: str) -> int:
        return self.levels[STATES.index(state)]


def strip_clip_id(raw: str) -> str:
    name = raw.strip()
    for suffix in VIDEO_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def person_of(clip_id: str) -> str:
    return clip_id[:PERSON_DIGITS]


def read_label_csv(path: Path, split: str) -> list[Clip]:
    """Clips of one label file; LabelError on missing columns or levels outside 0..3."""
    with Path(path).open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise LabelError(f"{path}: empty label file") from None
        names = [h.strip().lower() for h in header]
        wanted = ("clipid",) + STATES
        missing = [w for w in wanted if w not in names]
        if missing:
            raise LabelError(f"{path}: missing columns {missing}; header is {header} "
                             f"(expected ClipID,Boredom,Engagement,Confusion,Frustration)")
        index = [names.index(w) for w in wanted]
        clips = []
        for line_no, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue  # blank trailing lines
            if len(row) <= max(index):
                raise LabelError(f"{path}:{line_no}: {len(row)} fields, expected {len(header)}: {row}")
            clip_id = strip_clip_id(row[index[0]])
            levels = []
            for state, col in zip(STATES, index[1:], strict=True):
                cell = row[col].strip()
                try:
                    value = int(float(cell))
                except (ValueError, OverflowError):  # "high", "nan"; "inf" overflows int()
                    raise LabelError(f"{path}:{line_no}: {state} of {clip_id} is {cell!r}, not a level 0-3") from None
                if value not in (0, 1, 2, 3) or float(cell) != value:
                    raise LabelError(f"{path}:{line_no}: {state} of {clip_id} is {cell}, outside the levels 0-3")
                levels.append(value)
            clips.append(Clip(clip_id, person_of(clip_id), split, tuple(levels)))
    return clips


def label_file(root: Path, split: str) -> Path:
    return Path(root) / "Labels" / f"{split}Labels.csv"


def load_splits(root: Path, splits: tuple[str, ...] = SPLITS) -> dict[str, list[Clip]]:
    """Clips per split from <root>/Labels/<Split>Labels.csv; the person comes from the video folder when present."""
    videos = find_videos(root)
    out: dict[str, list[Clip]] = {}
    for split in splits:
        path = label_file(root, split)
        if not path.is_file():
            raise LabelError(f"{path} not found: a DAiSEE root holds Labels/{{Train,Validation,Test}}Labels.csv")
        clips = []
        for clip in read_label_csv(path, split):
            found = videos.get(clip.clip_id)
            if found is not None:
                clip = Clip(clip.clip_id, found.parent.parent.name, split, clip.levels)
            clips.append(clip)
        out[split] = clips
    return out


def find_videos(root: Path) -> dict[str, Path]:
    """ClipID -> video file, from DataSet/<Split>/<Person>/<Clip>/<Clip>.avi|mp4."""
    found: dict[str, Path] = {}
    base = Path(root) / "DataSet"
    if not base.is_dir():
        return found
    for path in sorted(base.glob("*/*/*/*")):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.stem == path.parent.name:
            found[path.stem] = path
    return found


def video_split(path: Path) -> str:
    return path.parent.parent.parent.name


def persons_in_several_splits(splits: dict[str, list[Clip]]) -> dict[str, list[str]]:
    """Person -> splits, for every person found in more than one split (a leak between splits)."""
    seen: dict[str, set[str]] = {}
    for split, clips in splits.items():
        for clip in clips:
            seen.setdefault(clip.person, set()).add(split)
    return {p: sorted(s) for p, s in sorted(seen.items()) if len(s) > 1}


def unknown_clips(root: Path, splits: dict[str, list[Clip]]) -> tuple[list[str], list[str]]:
    """(labelled clips without a video, videos without a label)."""
    videos = find_videos(root)
    labelled = {c.clip_id for clips in splits.values() for c in clips}
    return sorted(labelled - set(videos)), sorted(set(videos) - labelled)


def distribution_rows(clips: list[Clip]) -> list[dict[str, object]]:
    rows = []
    for i, state in enumerate(STATES):
        counts = Counter(c.levels[i] for c in clips)
        total = sum(counts.values())
        average = sum(level * n for level, n in counts.items()) / total if total else 0.0
        rows.append({"state": state, **{str(level): counts.get(level, 0) for level in range(4)},
                     "total": total, "average": round(average, 3),
                     "pct_0": round(100.0 * counts.get(0, 0) / total, 1) if total else 0.0})
    return rows


def distribution_table(clips: list[Clip], title: str = "") -> str:
    """The DAiSEE distribution table: count of each level per state, total, average, percent 0."""
    lines = [title] if title else []
    lines.append(f"{'state':<12}{'0':>7}{'1':>7}{'2':>7}{'3':>7}{'total':>8}{'average':>9}{'% 0':>7}")
    for row in distribution_rows(clips):
        lines.append(f"{row['state']:<12}{row['0']:>7}{row['1']:>7}{row['2']:>7}{row['3']:>7}"
                     f"{row['total']:>8}{row['average']:>9.3f}{row['pct_0']:>7.1f}")
    return "\n".join(lines)


def report(root: Path) -> tuple[str, bool]:
    """Text of the `labels` step and whether the data set is usable (no person leaks between splits)."""
    splits = load_splits(root)
    parts = []
    for split, clips in splits.items():
        parts.append(distribution_table(clips, f"{split}: {len(clips)} clips, "
                                                f"{len({c.person for c in clips})} persons"))
    everything = [c for clips in splits.values() for c in clips]
    parts.append(distribution_table(everything, f"All: {len(everything)} clips"))
    missing, unlabelled = unknown_clips(root, splits)
    if missing:
        parts.append(f"{len(missing)} labelled clips have no video (skipped by extract): {', '.join(missing[:10])}")
    if unlabelled:
        parts.append(f"{len(unlabelled)} videos have no label (skipped by extract): {', '.join(unlabelled[:10])}")
    leaks = persons_in_several_splits(splits)
    if leaks:
        parts.append("ERROR: persons in more than one split: "
                     + "; ".join(f"{p} in {', '.join(s)}" for p, s in leaks.items()))
    else:
        parts.append("OK: no person appears in two splits")
    return "\n\n".join(parts), not leaks
