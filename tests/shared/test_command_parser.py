"""A wrong command line is one line on standard error, exit code 2, from the real commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.ops.command_parser import CommandParser
from shared.ops.config import REPO_ROOT


def _engagement(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engagement.cli", *argv], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("argv", "said"), [
    (("run", "--fsp", "3"), "engagement run: unrecognized arguments: --fsp 3 (did you mean --fps?); "
                            "see `engagement run --help`"),
    (("run", "--fps"), "engagement run: argument --fps: expected one argument; see `engagement run --help`"),
    (("report",), "engagement report: the following arguments are required: session; "
                  "see `engagement report --help`"),
])
def test_a_wrong_command_line_is_one_line_and_exit_code_2(argv, said):
    result = _engagement(*argv)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [said]  # not argparse's usage, dozens of lines for `run`
    assert result.stdout == ""


def test_no_suggestion_for_a_flag_like_none_and_several_for_several():
    parser = CommandParser(prog="demo")
    parser.add_argument("--source")
    parser.add_argument("--report-dir")
    assert parser._suggestion("unrecognized arguments: --zzzz") == ""
    assert parser._suggestion("unrecognized arguments: --sorce=a --report-dri b") == \
        " (did you mean --source, --report-dir?)"
    assert parser._suggestion("argument --source: expected one argument") == ""
