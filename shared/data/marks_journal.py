"""The teacher's marks of a class not yet reported, on local disk: a mark survives a Redis that
restarts empty or goes away mid-class, as the class's frames do (shared/data/journal.py).

The web appends each mark of such a class to JOURNAL_DIR/<session>/marks.jsonl (the aggregator's
journal folder: `engagement run` sets both to the run's folder; compose mounts one volume) before
it writes Redis, one JSON line a mark (`Mark.to_dict`), written whole and fsynced: the page is
answered once the mark is on disk. The reporter puts the file's marks in the report beside those
Redis has (`marks.merge` counts a mark in both once), then deletes the file with the journal.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from shared.data.journal import journal_path, write_all
from shared.data.marks import Mark, MarkError, validate_mark

MARKS_NAME = "marks.jsonl"

log = logging.getLogger(__name__)


def marks_path(folder: Path | str, session: str) -> Path:
    """Beside the session's journal, in the same folder."""
    return journal_path(folder, session).with_name(MARKS_NAME)


def append_mark(folder: Path | str, mark: Mark) -> Path:
    """Write the mark to disk for good (OSError when it cannot be: a full or unwritable disk)."""
    path = marks_path(folder, mark.session)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(mark.to_dict(), separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        write_all(fd, line)  # a crash leaves the whole line or a cut one (skipped by the reader)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_marks(folder: Path | str, session: str) -> list[Mark]:
    """The session's journaled marks; a line cut short or not a mark is skipped (and said)."""
    path = marks_path(folder, session)
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:  # unreadable: what Redis has still counts
        log.warning("%s cannot be read (%s): its marks are left out", path, exc)
        return []
    marks, bad = [], 0
    for line in lines:
        try:
            row = json.loads(line)
            mark = validate_mark(row)
        except (ValueError, MarkError):  # json's errors are ValueErrors too
            bad += 1
            continue
        mark.id = str(row.get("id") or "")
        marks.append(mark)
    if bad:
        log.warning("%s: %d line(s) not a mark (cut short?): skipped", path, bad)
    return marks


def remove_marks(folder: Path | str, session: str) -> None:
    """The report carries the marks: the file goes (before the journal, whose removal takes the folder)."""
    marks_path(folder, session).unlink(missing_ok=True)
