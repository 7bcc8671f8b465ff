"""A real X server (Xvfb) and a real window on it, for the screen sources' tests and benchmark.

Xvfb, ffplay (FFmpeg) and xdotool are Debian packages that scripts/setup.sh installs; the
window is ffplay playing a gallery video, so what the capture grabs was drawn by a real
player through SDL, not written into a buffer by the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


def require(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    assert not missing, f"{', '.join(missing)} missing: run scripts/setup.sh (Debian xvfb, ffmpeg, xdotool)"


@contextmanager
def xvfb(width: int = 1920, height: int = 1080) -> Iterator[str]:
    """A fresh X server on a free display number; yields its DISPLAY (":N")."""
    require("Xvfb", "xwininfo")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
                             "-nolisten", "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as f:
            number = f.readline().strip()  # Xvfb writes it once it accepts clients
        assert number.isdigit(), "Xvfb did not start"
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def window_ids(display: str, title: str) -> list[str]:
    out = subprocess.run(["xdotool", "search", "--name", title], capture_output=True, text=True,
                         env=dict(os.environ, DISPLAY=display))
    return out.stdout.split()


@contextmanager
def player(display: str, video: str, title: str, left: int = 40, top: int = 30,
           size: tuple[int, int] | None = None, loop: bool = True) -> Iterator[subprocess.Popen]:
    """ffplay showing `video` in a window titled `title`, until the block ends (or it is closed)."""
    require("ffplay", "xdotool")
    args = ["ffplay", "-loglevel", "error", "-an", "-window_title", title, "-left", str(left), "-top", str(top)]
    if size:
        args += ["-x", str(size[0]), "-y", str(size[1])]
    args += ["-loop", "0"] if loop else ["-autoexit"]
    proc = subprocess.Popen([*args, video], env=dict(os.environ, DISPLAY=display, SDL_AUDIODRIVER="dummy"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not window_ids(display, title):
            assert proc.poll() is None, "ffplay exited before showing its window"
            assert time.monotonic() < deadline, "ffplay's window did not appear"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def move_window(display: str, title: str, x: int, y: int) -> None:
    for wid in window_ids(display, title):
        subprocess.run(["xdotool", "windowmove", wid, str(x), str(y)], check=True,
                       env=dict(os.environ, DISPLAY=display))
