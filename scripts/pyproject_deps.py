"""Print the requirements of pyproject.toml, one a line, for `pip install -r - -c constraints.txt`.

    python scripts/pyproject_deps.py [EXTRA ...]

The build backend ([build-system] requires), the project's dependencies, then those of each
named extra. compose/Dockerfile installs them in a layer of their own before the source is
copied, so a code change does not reinstall every dependency.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    project = data["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"pyproject_deps: no extra {', '.join(unknown)} (known: {', '.join(optional)})")
    lines = [*data["build-system"]["requires"], *project.get("dependencies", [])]
    for extra in extras:
        lines += optional[extra]
    return list(dict.fromkeys(lines))


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
