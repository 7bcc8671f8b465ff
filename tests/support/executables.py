"""Finding the command-line tools the project relies on, where the project put them.

Tools that come with the project's Python extras (hadolint, kubectl, ruff, ...) live in the
scripts folder of the interpreter that runs us (`.venv/bin`), which is not on PATH when a
command calls `.venv/bin/pytest` or `.venv/bin/engagement` directly. So that folder is looked
in first, then PATH (Debian's packages: redis-server, mosquitto, ffmpeg, promtool).
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path


def scripts_dir() -> Path:
    """The folder where pip put the console scripts of the running interpreter's packages."""
    return Path(sysconfig.get_path("scripts"))


def find_executable(name: str) -> str | None:
    """Path of `name`: the running interpreter's scripts folder first, then PATH; None when absent."""
    candidate = scripts_dir() / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)
