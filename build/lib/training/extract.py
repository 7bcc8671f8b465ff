"""Frame extraction with FFmpeg into the reference layout, in parallel, resumable.

<out>/<N>FPS/all/<Split>/<Clip>_<nnn>.jpg        every frame once (the all-images folder)
<out>/<N>FPS/data/<Split>/b0..b3/<Clip>_<nnn>.jpg the same files hard-linked by boredom level
<out>/<N>FPS/manifest.csv                          all four labels of every frame
<out>/<N>FPS/skipped.csv                           clips not extracted and why
<out>/<N>FPS/.done/<Clip>.json                     marker: the clip is complete (resume skips it)
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from training.labels import Clip, find_videos, load_splits
from training.manifest import MANIFEST, ImageRow, fps_root, write_manifest

log = logging.getLogger(__name__)

FFMPEG_TIMEOUT_S = 300


@dataclass
class ExtractResult:
    extracted: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # done by an earlier run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (clip, reason)
    frames: int = 0


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)  # same bytes, no second copy on disk
    except OSError:
        shutil.copy2(src, dst)


def extract_clip(video: Path, clip: Clip, root: Path, fps: int) -> list[ImageRow]:
    """Frames of one clip; raises RuntimeError with FFmpeg's reason when the video cannot be decoded."""
    tmp = root / ".tmp" / clip.clip_id
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
           "-vf", f"fps={fps}", "-q:v", "2", str(tmp / f"{clip.clip_id}_%03d.jpg")]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"ffmpeg took longer than {FFMPEG_TIMEOUT_S} s") from None
    frames = sorted(tmp.glob("*.jpg"))
    if done.returncode != 0 or not frames:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = (done.stderr.strip().splitlines() or ["no frames decoded"])[-1]
        raise RuntimeError(f"ffmpeg exit {done.returncode}: {reason}")
    rows = []
    for index, frame in enumerate(frames):
        rel_all = Path("all") / clip.split / frame.name
        dst = root / rel_all
        dst.parent.mkdir(parents=True, exist_ok=True)
        frame.replace(dst)
        _link(dst, root / "data" / clip.split / f"b{clip.boredom}" / frame.name)
        rows.append(ImageRow(rel_all.as_posix(), clip.split, clip.clip_id, clip.person, index, *clip.levels))
    shutil.rmtree(tmp, ignore_errors=True)
    marker = root / ".done" / f"{clip.clip_id}.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps([asdict(r) for r in rows]))  # written last: its presence means complete
    return rows


def _done_rows(root: Path, clip_id: str) -> list[ImageRow] | None:
    marker = root / ".done" / f"{clip_id}.json"
    if not marker.is_file():
        return None
    try:
        return [ImageRow(**r) for r in json.loads(marker.read_text())]
    except (ValueError, TypeError):
        return None  # a damaged marker: extract the clip again


def extract(dataset: Path, out_root: Path, fps: int = 1, workers: int | None = None,
            progress: bool = True) -> ExtractResult:
    """Extract every labelled clip of a DAiSEE-layout folder; never stops on a bad video."""
    if fps < 1:
        raise ValueError("fps must be 1 or more")
    root = fps_root(out_root, fps)
    root.mkdir(parents=True, exist_ok=True)
    splits = load_splits(dataset)
    videos = find_videos(dataset)
    result = ExtractResult()
    rows: list[ImageRow] = []
    todo: list[tuple[Path, Clip]] = []
    labelled = set()
    for clips in splits.values():
        for clip in clips:
            labelled.add(clip.clip_id)
            video = videos.get(clip.clip_id)
            if video is None:
                result.skipped.append((clip.clip_id, "labelled but no video file"))
                continue
            done = _done_rows(root, clip.clip_id)
            if done is not None:
                result.resumed.append(clip.clip_id)
                rows += done
            else:
                todo.append((video, clip))
    for clip_id in sorted(set(videos) - labelled):
        result.skipped.append((clip_id, "video without a label (unknown ClipID)"))
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:  # FFmpeg runs in its own processes
        futures = {pool.submit(extract_clip, video, clip, root, fps): clip for video, clip in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"extract {fps} FPS",
                           unit="clip", disable=not progress):
            clip = futures[future]
            try:
                clip_rows = future.result()
            except Exception as exc:  # noqa: BLE001 - one bad video must not stop the other 8,924
                log.warning("skipping clip %s: %s", clip.clip_id, exc)
                result.skipped.append((clip.clip_id, str(exc)))
                continue
            result.extracted.append(clip.clip_id)
            rows += clip_rows
    shutil.rmtree(root / ".tmp", ignore_errors=True)
    result.frames = len(rows)
    write_manifest(root / MANIFEST, rows)
    with (root / "skipped.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip", "reason"])
        writer.writerows(sorted(result.skipped))
    log.info("extract: %d clips extracted, %d already done, %d skipped (listed in %s), %d frames",
             len(result.extracted), len(result.resumed), len(result.skipped), root / "skipped.csv", result.frames)
    return result
