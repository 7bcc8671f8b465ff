"""The run's private bus folder: TRANSPORT=ipc's Unix sockets, or TRANSPORT=tcp's CURVE keys.

On one host nothing but the folder's mode keeps another user's process off an ipc link, and on
TCP loopback any local process can connect to a link: a stray PULL on the frames link took 8 of
46 frames and the report said nothing. So with TCP the run makes its own CURVE key pair
(BUS_AUTH=curve, the default) and every service authenticates its peers with it; the folder
holding the ipc sockets or the keys is 0700 and owned by the user, checked after it is made (a
TMPDIR on a file system that ignores modes would otherwise hand the bus to everyone).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from shared.bus.bus import make_curve_keys
from shared.ops.settings import RunSettings


class BusFolderError(Exception):
    pass


def private_folder_problem(path: str) -> str | None:
    """Why `path` is not private to this user (owner only, mode 0700), or None."""
    st = os.stat(path)
    if st.st_uid != os.getuid():
        return f"the bus folder {path} belongs to user {st.st_uid}, not to this user"
    if stat.S_IMODE(st.st_mode) & 0o077:
        return (f"the bus folder {path} is open to others (mode {stat.S_IMODE(st.st_mode):o}, want 700): "
                "set TMPDIR to a folder on a file system that keeps modes")
    return None


def make_bus_folder(settings: RunSettings) -> str:
    """Make the folder the run's bus needs ("" when none: TCP without authentication, or the user's
    own CURVE_SERVER_KEY); with TCP and BUS_AUTH=curve, set settings.common.curve_server_key to the run's
    key. BusFolderError (one line) when the folder is not private."""
    tcp = settings.launcher.transport == "tcp"
    if tcp and (settings.launcher.bus_auth == "off" or settings.common.curve_server_key):
        return ""
    folder = tempfile.mkdtemp(prefix="engagement-bus-")
    problem = private_folder_problem(folder)
    if problem:
        shutil.rmtree(folder, ignore_errors=True)
        raise BusFolderError(problem)
    if tcp:
        settings.set(curve_server_key=str(make_curve_keys(str(Path(folder) / "keys"))))
    return folder
