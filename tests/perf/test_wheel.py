"""`engagement bench` and `engagement make-sample` run from an installed wheel, not only a checkout.

The project is built as a wheel (pip, the real build backend), unpacked on its own, and run
with a Python that sees the unpacked wheel and the installed dependencies but not the
checkout (`-S`: no site hooks, so not the editable install either).
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_and_the_sample_tool_are_in_the_wheel_and_run_from_it(tmp_path):
    context = tmp_path / "context"
    for src in ("engagement", "shared", "services", "training", "tools", "bench"):
        shutil.copytree(ROOT / src, context / src, ignore=shutil.ignore_patterns("__pycache__"))
    for src in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / src, context / src)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(context)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(installed)
    assert {"bench/bench.py", "bench/pipeline.py", "bench/taps.py", "tools/sample_video.py"} <= names
    assert not any(n.startswith("tests/") for n in names)

    paths = [str(installed), *site.getsitepackages()]
    code = ("import sys; sys.path[:0] = " + repr(paths) + "\n"
            "import bench, tools; assert bench.__file__.startswith(" + repr(str(installed)) + "), bench.__file__\n"
            "from engagement.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    for argv in (["bench", "--help"], ["make-sample", "--help"]):
        ran = subprocess.run([sys.executable, "-S", "-c", code, *argv], cwd=run_dir, capture_output=True,
                             text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert f"engagement {argv[0]}" in ran.stdout
    video = run_dir / "s.avi"
    ran = subprocess.run([sys.executable, "-S", "-c", code, "make-sample", "--out", str(video), "--seconds", "1"],
                         cwd=run_dir, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert video.stat().st_size > 0
