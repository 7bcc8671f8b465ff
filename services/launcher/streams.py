"""The streams of a class: what `--source` (repeatable) names, each with its id and FPS.

A source is given as `SOURCE`, `ID=SOURCE` or `ID@FPS=SOURCE` (e.g. `--source front@1=rtsp://...`):
ID becomes the capture's STREAM_ID, FPS its frame rate (the run's FPS when not given). The
config file's `source:` may be a list of the same texts, or of mappings {id, source, fps}.
One source alone keeps today's behaviour: its stream is STREAM_ID (cam0) unless it is named.
Several unnamed sources get ids derived from the source (file name, camera index, host), made
unique with -2, -3...
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.ops.config import SettingError

# The ID part: no ':' or '/', so a URL (rtsp://h/x?a=b) or a path is never read as a name.
_NAMED = re.compile(r"^(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]{0,62})(?:@(?P<fps>[0-9]*\.?[0-9]+))?=(?P<source>.+)$")
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Stream:
    id: str
    source: str
    fps: float | None = None  # None: the run's FPS


def parse_source(text: str) -> tuple[str | None, str, float | None]:
    """(id or None, source, fps or None) of one `--source` value."""
    found = _NAMED.match(text.strip())
    if not found:
        return None, text.strip(), None
    fps = float(found["fps"]) if found["fps"] else None
    return found["id"], found["source"], fps


def derived_id(source: str) -> str:
    """A readable stream id from the source: the file's name, cam<N>, the URL's host, screen."""
    if source.isdigit():
        return f"cam{source}"
    if source.startswith("/dev/video") and source[len("/dev/video"):].isdigit():
        return f"cam{source[len('/dev/video'):]}"
    if source.startswith("screen") or source.startswith("window"):
        return _SLUG.sub("-", source.split(":", 1)[0]).strip("-") or "screen"
    if "://" in source:
        parts = urlsplit(source)
        text = (parts.hostname or "") + parts.path.replace("/", "-")
    else:
        text = Path(source).stem
    return _SLUG.sub("-", text).strip("-.")[:40] or "stream"


def plan_streams(given: list[Any], default_id: str) -> list[Stream]:
    """The class's streams from the `--source` values (texts, or the config file's mappings)."""
    raw: list[tuple[str | None, str, float | None]] = []
    for item in given:
        if isinstance(item, dict):
            source = str(item.get("source", "")).strip()
            fps = item.get("fps")
            raw.append((str(item["id"]) if item.get("id") else None, source,
                        None if fps is None else _fps(fps, source)))
        else:
            raw.append(parse_source(str(item)))
    for _, source, _ in raw:
        if not source:
            raise SettingError("setting SOURCE has an empty source; give a video file, camera index, URL or screen")
    if len(raw) == 1:
        name, source, fps = raw[0]
        return [Stream(name or default_id, source, fps)]
    named = [name for name, _, _ in raw if name]
    if len(set(named)) != len(named):
        twice = sorted({n for n in named if named.count(n) > 1})
        raise SettingError(f"setting SOURCE names stream {twice[0]!r} twice; give every source its own id")
    taken = set(named)
    streams = []
    for name, source, fps in raw:
        if not name:
            base = name = derived_id(source)
            n = 2
            while name in taken:
                name, n = f"{base}-{n}", n + 1
            taken.add(name)
        streams.append(Stream(name, source, fps))
    return streams


def _fps(value: Any, source: str) -> float:
    try:
        fps = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"setting SOURCE {source!r}: fps {value!r} is not a number") from None
    if not fps >= 0:
        raise SettingError(f"setting SOURCE {source!r}: fps {value!r} must be 0 (every frame) or more")
    return fps
