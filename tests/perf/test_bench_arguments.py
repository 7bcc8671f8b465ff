"""Every benchmark refuses, before it measures, what would measure nothing or lose its figures: one
line on standard error, exit 2, no results file (bench/arguments.py). Nothing here runs a pipeline."""

from __future__ import annotations

import pytest

from bench import bench, gallery, streams, web
from bench.arguments import out_refusal, unwritable
from engagement.cli import main as engagement

COUNTS = [
    (streams.main, ["--streams", "2", "0"], "--streams must be at least 1 each"),
    (streams.main, ["--seconds", "-3"], "--seconds positive"),
    (gallery.main, ["--grid", "0"], "--grid at least 1"),
    (gallery.main, ["--seconds", "0"], "--seconds must be positive"),
    (web.main, ["--seconds", "-1"], "--seconds positive"),
    (bench.main, ["--hops", "-5"], "--hops must be positive"),
    (bench.main, ["--soak-seconds", "-1"], "--soak-seconds at least 0"),
]


@pytest.mark.parametrize("main,argv,words", COUNTS, ids=[f"{m.__module__} {' '.join(a)}" for m, a, _ in COUNTS])
def test_a_count_that_measures_nothing_is_refused_in_one_line(main, argv, words, tmp_path, capsys):
    out = tmp_path / "figures.json"
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and words in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("main", [streams.main, gallery.main, web.main, bench.main])
def test_an_out_file_that_cannot_be_written_is_refused_before_the_run(main, tmp_path, capsys):
    missing = tmp_path / "no-such-folder" / "figures.json"
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(missing)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"--out {missing}: cannot be written (No such file or directory)" in err
    assert not missing.parent.exists()


def test_unwritable_says_why_and_leaves_no_file_behind(tmp_path):
    fresh, kept = tmp_path / "new.json", tmp_path / "old.json"
    kept.write_text("{}")
    assert unwritable(fresh) is None and not fresh.exists()  # the file made to find out is gone again
    assert unwritable(kept) is None and kept.read_text() == "{}"
    assert unwritable(tmp_path) == "Is a directory"
    assert out_refusal(out=fresh, results_md=tmp_path / "x" / "y.md") == (
        f"--results-md {tmp_path / 'x' / 'y.md'}: cannot be written (No such file or directory)")


def test_make_sample_and_curve_keys_refuse_a_path_they_cannot_write_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert engagement(["make-sample", "--out", str(blocker / "class.avi"), "--seconds", "1"]) == 2
    assert engagement(["make-curve-keys", str(blocker / "keys")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"engagement make-sample: cannot write {blocker / 'class.avi'}")
    assert lines[1].startswith(f"engagement make-curve-keys: cannot write the key pair in {blocker / 'keys'}")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("argv,words", [
    (["bench-capacity", "--quick", "--seconds", "30"],
     "--quick sets --cases, --seconds, --max-streams, --confirm itself"),
    (["bench-capacity", "--quick", "--confirm", "3"], "or --confirm without it"),
    (["bench-capacity", "--max-streams=8", "--quick"], "or --max-streams without it"),
    (["bench-streams", "--quick", "--streams", "4"], "--quick sets --streams, --seconds itself"),
])
def test_quick_with_the_flags_it_sets_is_refused_not_silently_overridden(argv, words, tmp_path, capsys):
    out = tmp_path / "figures.json"
    try:
        code = engagement([*argv, "--out", str(out)])
    except SystemExit as stop:  # bench-streams refuses through its parser
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1 and not out.exists()
