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


def quick_conflict(argv: list[str], quick_sets: tuple[str, ...]) -> str | None:
    """The refusal's line when --quick comes with flags it sets itself (a smoke run of 3 s where the user
    asked for 30 was taken silently); None when it does not."""
    if "--quick" not in argv:
        return None
    given = [flag for flag in quick_sets if any(a == flag or a.startswith(flag + "=") for a in argv)]
    if not given:
        return None
    return (f"--quick sets {', '.join(quick_sets)} itself: give --quick alone for a smoke run, or {', '.join(given)} "
            f"without it")
