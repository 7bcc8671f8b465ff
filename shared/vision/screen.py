"""Screen and window grabbing: a Zoom or Teams gallery read off the X11 screen.

Shared by capture (services/capture/sources.py wraps it as a source) and the start-up
check of `engagement run`, which grabs one frame before anything starts.

Source strings:
    screen            the first monitor
    screen:N          monitor N (1-based, as `mss` numbers them; 0 = every monitor together)
    region:X,Y,W,H    a rectangle of the screen, in pixels
    window:TITLE      the first window whose title contains TITLE (case-insensitive); it is
                      looked up again every second, so the capture follows a window that
                      moves or is resized, and the stream ends when the window closes

Grabbing goes through `mss` (XGetImage over ctypes: no FFmpeg x11grab process to manage);
windows are found with `xwininfo` (Debian x11-utils). X11 only: on a Wayland session mss
sees the XWayland windows only (a native Wayland window is black or missing), and there is
no portal/PipeWire screencast here.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mss.base import MSS

log = logging.getLogger(__name__)

WINDOW_RECHECK_SECONDS = 1.0
SCREEN_PREFIXES = ("screen:", "region:", "window:")
MAX_WIDTH = 1920  # a larger screen is scaled down to this width: 4K frames gain nothing at 2 FPS

# `xwininfo -root -tree` lines: 0x400001 "title": ("res" "class")  640x480+0+0  +100+50
_TREE_LINE = re.compile(r'^\s*(0x[0-9a-f]+) "(.*)":.*?(\d+)x(\d+)[+-]-?\d+[+-]-?\d+\s+\+(-?\d+)\+(-?\d+)\s*$')


class ScreenError(RuntimeError):
    """The display, monitor, region or window is not there."""


def is_screen_source(source: str) -> bool:
    text = source.strip().lower()
    return text == "screen" or text.startswith(SCREEN_PREFIXES)


_V4L2_DEVICE = re.compile(r"^/dev/video\d+$")


def open_camera(source: str) -> Any:
    """A camera by index (0) or by its device path (/dev/video2: stable with udev rules)."""
    import cv2  # here: the launcher classifies sources without loading OpenCV

    source = source.strip()
    return cv2.VideoCapture(int(source)) if source.isdigit() else cv2.VideoCapture(source, cv2.CAP_V4L2)


def source_kind(source: str) -> str:
    """'camera' for an index, 'stream' for a URL, 'screen' for screen:/region:/window:, 'file' otherwise."""
    if is_screen_source(source):
        return "screen"
    if source.strip().isdigit() or _V4L2_DEVICE.match(source.strip()):
        return "camera"
    if "://" in source:
        return "stream"
    return "file"


@dataclass(frozen=True)
class Region:
    left: int
    top: int
    width: int
    height: int

    def as_mss(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "width": self.width, "height": self.height}


def find_window(title: str) -> Region | None:
    """The largest viewable window whose title contains `title`, or None."""
    if not shutil.which("xwininfo"):
        raise ScreenError("window capture needs xwininfo (Debian package x11-utils)")
    try:
        out = subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ScreenError(f"xwininfo failed: {exc}") from exc
    if out.returncode != 0:
        raise ScreenError(f"cannot list windows: {out.stderr.strip() or 'no X display'}")
    best: Region | None = None
    for line in out.stdout.splitlines():
        m = _TREE_LINE.match(line)
        if not m or title.lower() not in m.group(2).lower():
            continue
        w, h, x, y = (int(v) for v in m.group(3, 4, 5, 6))
        if w > 1 and h > 1 and (best is None or w * h > best.width * best.height):
            best = Region(x, y, w, h)
    return best


def parse_region(text: str) -> Region:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ScreenError(f"region {text!r} is not X,Y,W,H in pixels") from None
    if w <= 0 or h <= 0:
        raise ScreenError(f"region {text!r} has no area")
    return Region(x, y, w, h)


def clip(region: Region, bounds: Region) -> Region | None:
    """The part of `region` on the screen (XGetImage fails outside it), or None."""
    left, top = max(region.left, bounds.left), max(region.top, bounds.top)
    right = min(region.left + region.width, bounds.left + bounds.width)
    bottom = min(region.top + region.height, bounds.top + bounds.height)
    if right - left < 2 or bottom - top < 2:
        return None
    return Region(left, top, right - left, bottom - top)


class ScreenGrabber:
    """Grabs a monitor, a region or a window at most `fps` times a second."""

    def __init__(self, source: str, fps: float = 0.0) -> None:
        try:
            import mss  # only capture of a screen needs it
        except ImportError:
            raise ScreenError("screen capture needs the mss package (pip install mss)") from None
        self.source = source
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.closed = False  # the window went away: the stream is over, not dropped out
        self.moves = 0  # times a followed window was found elsewhere or resized
        self._next_grab = 0.0
        self._next_lookup = 0.0
        self._title = ""
        try:
            self.sct: MSS | None = mss.mss()
        except Exception as exc:  # mss raises its own ScreenShotError, or XOpenDisplay fails
            raise ScreenError(f"cannot open the X display for {source}: {exc}") from None
        monitors = self.sct.monitors
        self.bounds = Region(**{k: monitors[0][k] for k in ("left", "top", "width", "height")})
        kind, _, arg = source.strip().partition(":")
        kind = kind.lower()
        if kind == "screen":
            n = int(arg) if arg.strip().isdigit() else 1 if not arg else -1
            if not 0 <= n < len(monitors):
                self.release()
                raise ScreenError(f"no monitor {arg!r}: this display has {len(monitors) - 1}")
            self.region: Region | None = Region(**{k: monitors[n][k] for k in ("left", "top", "width", "height")})
        elif kind == "region":
            self.region = clip(parse_region(arg), self.bounds)
            if self.region is None:
                self.release()
                raise ScreenError(f"region {arg} is off the screen ({self.bounds.width}x{self.bounds.height})")
        else:
            self._title = arg
            self.region = self._locate()
            if self.region is None:
                self.release()
                raise ScreenError(f"no window titled {arg!r} on the display")

    def _locate(self) -> Region | None:
        found = find_window(self._title)
        self._next_lookup = time.monotonic() + WINDOW_RECHECK_SECONDS
        return clip(found, self.bounds) if found else None

    def _follow_window(self) -> bool:
        """Re-find the window; False when it has closed."""
        found = self._locate()
        if found is None:
            log.warning("window %r closed", self._title)
            self.closed = True
            return False
        if found != self.region:
            self.moves += 1
            log.info("window %r moved or resized to %dx%d at +%d+%d", self._title,
                     found.width, found.height, found.left, found.top)
            self.region = found
        return True

    def grab(self) -> np.ndarray | None:
        """The next image (BGR), or None when the window closed or the grab failed."""
        # Grab only when a frame is due: grabbing a full screen as fast as possible would take a core.
        wait = self._next_grab - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        # The next grab is one period after this one (or after now, when this one came late).
        self._next_grab = max(self._next_grab, time.monotonic()) + self.period
        if self._title and time.monotonic() >= self._next_lookup:
            try:
                if not self._follow_window():
                    return None
            except ScreenError as exc:
                log.warning("%s", exc)
                return None
        if self.sct is None or self.region is None:  # released (the region is known from __init__ on)
            return None
        try:
            shot = self.sct.grab(self.region.as_mss())
        except Exception as exc:  # the display went away, or the region is no longer on it
            log.warning("screen grab of %s failed: %s", self.source, exc)
            return None
        image = np.asarray(shot)[:, :, :3]  # BGRA -> BGR, no copy yet
        if image.shape[1] > MAX_WIDTH:
            import cv2

            scale = MAX_WIDTH / image.shape[1]
            image = cv2.resize(image, (MAX_WIDTH, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image)

    def release(self) -> None:
        sct = getattr(self, "sct", None)
        if sct is not None:
            sct.close()
            self.sct = None
