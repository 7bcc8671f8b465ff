"""A stream id (or any name from configuration) as a safe part of a file name."""

from __future__ import annotations

import re


def file_part(name: str, empty: str = "stream") -> str:
    """`name` with every character outside letters, digits, `_`, `.` and `-` made `_` (a stream
    id can be a URL or a window title); `empty` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or empty
