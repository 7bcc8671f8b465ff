"""Bad input ends every step with one line and exit code 2, which the k8s Jobs do not retry
(their podFailurePolicy fails the Job on 2; a crash would exit 1 and be retried)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import main

STEPS = {
    "labels": ["labels", "--data", "{missing}"],
    "extract": ["extract", "--data", "{missing}", "--out", "{tmp}/frames"],
    "faces": ["faces", "--out", "{missing}"],
    "augment": ["augment", "--out", "{missing}"],
    "train": ["train", "--out", "{missing}", "--weights", "none", "--epochs", "1"],
    "evaluate": ["evaluate", "--run", "{missing}"],
    "export": ["export", "--run", "{missing}", "--bundle", "{tmp}/bundle"],
}


@pytest.mark.parametrize("step", list(STEPS))
def test_missing_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, step: str) -> None:
    args = [a.format(missing=tmp_path / "missing", tmp=tmp_path) for a in STEPS[step]]
    assert main(["--no-progress", *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if " ERROR " in line]
    assert len(lines) == 1 and f"{step} failed:" in lines[0] and "missing" in lines[0], err
    assert "Traceback" not in err


def test_bad_option_is_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--precision", "float8"])
    assert exc.value.code == 2 and "invalid choice: 'float8'" in capsys.readouterr().err
