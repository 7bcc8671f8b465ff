"""What every benchmark checks in its arguments before it measures anything.

A benchmark runs for minutes: an --out it cannot write lost its figures to a traceback at the end,
and a count of 0 streams or negative seconds measured nothing and wrote that down. Each is refused
at once, in one line (CommandParser.error: exit 2).
"""

from __future__ import annotations

from pathlib import Path


def unwritable(path: Path) -> str | None:
    """Why `path` cannot be written (None: it can); a file this made to find out is removed again."""
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    if not existed:
        path.unlink()
    return None


def out_refusal(**paths: Path | None) -> str | None:
    """The first of these output files (flag name -> path; `results_md` is --results-md) that cannot be
    written, said as the refusal's line; None when every one can."""
    for name, path in paths.items():
        if path is not None and (why := unwritable(path)):
            return f"--{name.replace('_', '-')} {path}: cannot be written ({why})"
    return None
