"""`engagement bench-capacity`: the search finds the largest count that held, and the figures add up.

The search is checked on its own with a predicate (which counts hold is the input, not a
speed); the smoke run (slow: two real `engagement run` classes of real-face webcams) checks
that every figure is written and consistent with the others, never how fast anything is.
"""

from __future__ import annotations

import json

import psutil
import pytest

from bench import capacity
from bench.observe import FrameRecord


@pytest.mark.parametrize("holds_up_to, cap, tried", [
    (5, 32, [1, 2, 4, 5, 6, 8]),
    (0, 32, [1]),
    (32, 32, [1, 2, 4, 8, 16, 32]),
    (20, 20, [1, 2, 4, 8, 16, 20]),
    (17, 20, [1, 2, 4, 8, 16, 17, 18, 20]),
])
def test_search_finds_the_largest_count_that_held(holds_up_to, cap, tried):
    calls = []

    def trial(n: int) -> dict:
        calls.append(n)
        return {"streams": n, "held": n <= holds_up_to}

    found, runs = capacity.search(trial, cap, confirm=1)
    assert found == holds_up_to
    assert sorted(calls) == tried and len(set(calls)) == len(calls)  # each count tried once
    assert [r["streams"] for r in runs] == tried


def _flaky(outcomes: dict[int, list[bool]], calls: list[int]):
    """A trial whose n-th try at a count gives the n-th outcome listed for it (then the last one again)."""
    def trial(n: int) -> dict:
        calls.append(n)
        listed = outcomes[n]
        return {"streams": n, "held": listed[min(calls.count(n), len(listed)) - 1]}
    return trial


def test_the_count_found_is_tried_again_until_it_has_held_confirm_times():
    calls: list[int] = []
    found, runs = capacity.search(_flaky({n: [n <= 5] for n in range(1, 33)}, calls), 32, confirm=3)
    assert found == 5 and calls == [1, 2, 4, 8, 6, 5, 5, 5]  # only the count found is tried again
    assert [(r["streams"], r["held"]) for r in runs] == [
        (1, True), (2, True), (4, True), (5, True), (5, True), (5, True), (6, False), (8, False)]


def test_a_count_that_fails_its_second_trial_takes_the_search_a_count_down():
    # 5 held once (a fast minute), then failed; 4 holds every time: the box holds 4.
    calls: list[int] = []
    outcomes = {**{n: [True] for n in range(1, 5)}, 5: [True, False], 6: [False], 8: [False]}
    found, runs = capacity.search(_flaky(outcomes, calls), 32)
    assert found == 4 and calls == [1, 2, 4, 8, 6, 5, 5, 4]
    assert [r["streams"] for r in runs if not r["held"]] == [5, 6, 8]  # every trial kept, the failed one too


def test_nothing_confirmed_is_zero():
    calls: list[int] = []
    found, _ = capacity.search(_flaky({1: [True, False]}, calls), 1)
    assert found == 0 and calls == [1, 1]


def test_results_md_section_is_replaced_not_repeated(tmp_path):
    md = tmp_path / "RESULTS.md"
    md.write_text("# title\n\n## older run\ntext\n")
    capacity.write_results_md(md, f"{capacity.RESULTS_BEGIN}\nfirst\n{capacity.RESULTS_END}")
    capacity.write_results_md(md, f"{capacity.RESULTS_BEGIN}\nsecond\n{capacity.RESULTS_END}")
    text = md.read_text()
    assert text.count(capacity.RESULTS_BEGIN) == 1 and "second" in text and "first" not in text
    assert text.startswith("# title\n") and text.index("second") < text.index("## older run")


def _record(seq: int, captured: float, latency: float) -> FrameRecord:
    return FrameRecord(seq, captured, {"inference": captured + latency}, captured + latency, 1, 1)


def test_the_class_start_is_told_apart_from_the_steady_state():
    # Two streams at 2 FPS from t=100: a late start (the held first second released together),
    # then steady; each stream's first frames are left out, as in the p99.
    records = [_record(seq, 100.0 + seq / 2 + stream / 4, latency)
               for stream in range(2) for seq, latency in enumerate([1.4, 1.1, 0.9, 0.7, 0.3] + [0.05] * 15)]
    start = capacity.class_start(records, p99_ms=500)
    assert start["late_until_s"] == pytest.approx(1.75)  # the second stream's seq 3, at 100 + 1.5 + 0.25
    # From 5 s on: seq 10..19 of both streams, every one 50 ms.
    assert start["steady_frames"] == 20 and start["steady_p99_ms"] == pytest.approx(50.0)
    assert capacity.class_start(records[5:20], p99_ms=500)["late_until_s"] == 0.0  # none over the bound
    assert capacity.class_start([], p99_ms=500) == {"late_until_s": None, "steady_p99_ms": None, "steady_frames": 0}


@pytest.mark.slow
def test_quick_bench_capacity_writes_consistent_figures(tmp_path, capsys):
    out, md = tmp_path / "capacity.json", tmp_path / "RESULTS.md"
    assert capacity.main(["--quick", "--out", str(out), "--results-md", str(md)]) == 0
    printed = capsys.readouterr().out
    assert "kernels after the trials" in printed
    r = json.loads(out.read_text())
    assert r["machine"]["at_start"]["load_average"] and r["machine"]["cores_usable"] >= 1
    (case,) = r["cases"]
    k = case["kernels"]
    assert case["case"] == "webcam" and k["faces_found"] >= 1
    # The limit is the kernels' time divided over the cores, and the ratio is capacity over it.
    assert k["frame_ms"] == pytest.approx(k["decode_ms"] + k["detection_ms"] + k["model_ms"], abs=0.03)
    # Timed before every trial and after the last: the figures are the median timing's.
    timings = k["frame_ms_timings"]
    assert len(timings) == len(case["runs"]) + 1 and k["frames_timed"] == 16 * len(timings)
    assert k["frame_ms"] == sorted(timings)[(len(timings) - 1) // 2]
    assert [run["kernels_frame_ms"] for run in case["runs"]] == timings[:-1]
    assert case["limit_streams"] == pytest.approx(k["cores"] / (2 * k["frame_ms"] / 1000), rel=0.01)
    assert case["ratio"] == pytest.approx(case["capacity"] / case["limit_streams"], abs=0.001)
    held = [run["streams"] for run in case["runs"] if run["held"]]
    assert case["capacity"] == max(held, default=0)
    assert all(run["streams"] > case["capacity"] for run in case["runs"] if not run["held"])
    for run in case["runs"]:
        assert run["exit_code"] == 0 and run["frames_expected"] == 6 * run["streams"]  # 3 s at 2 FPS
        # Held means every frame through once, none dropped, p99 under the bound; else it did not hold.
        lat = run["capture_to_prediction_ms"]["p99"]
        assert run["held"] == (run["frames_through"] == run["frames_expected"] and run["drops_counted"] == 0
                               and run["updates_repeated"] == 0 and lat is not None and lat < 500)
        assert run["frames_missing"] == run["frames_expected"] - run["frames_through"] >= 0
        assert run["cpu_percent_per_stream"] == pytest.approx(run["cpu_percent_all"] / run["streams"], abs=0.1)
        assert run["rss_mb_per_stream"] == pytest.approx(run["rss_mb_all"] / run["streams"], abs=0.1)
        # Shared pages split among the processes that share them: never more than they hold, every service read.
        assert 0 < run["pss_mb_all"] <= run["rss_mb_all"]
        assert all(p["pss_mb"] > 0 for p in run["processes"].values()), run["processes"]
        assert {"capture", "facedetect", "inference"} <= set(run["processes"])
        # The stages the class runs: the baseline at STRIDE 1 has no sequencer (inference reads facedetect's faces).
        assert set(run["stage_ms"]) == {"capture", "facedetect", "inference"}
        assert all(v["p50"] is not None and v["p50"] >= 0 for v in run["stage_ms"].values()), run["stage_ms"]
        assert run["machine_before"]["load_average"]
        # A 3 s class is all start: no steady frames; its last late frame within its 3 s, or none.
        start = run["class_start"]
        assert start["steady_frames"] == 0 and start["steady_p99_ms"] is None
        assert 0.0 <= start["late_until_s"] <= 3.0
        if run["capture_to_prediction_ms"]["p99"] >= 500:  # a p99 over the bound: some frame was over it
            assert start["late_until_s"] > 0
    if case["capacity"]:
        at = case["at_capacity"]
        assert 0 < at["pss_mb_per_stream"] <= at["rss_mb_per_stream"]
        ms = at["services_ms_per_frame"]  # all services' CPU over the frames a second
        assert ms == pytest.approx(at["cpu_percent_all"] * 10 / (2 * case["capacity"]), abs=0.01)
        timed_before = next(r["kernels_frame_ms"] for r in case["runs"] if r["streams"] == case["capacity"])
        assert at["kernels_share"] == pytest.approx(timed_before / ms, abs=0.001)
    text = md.read_text()
    assert "| one-face webcam, 640x480 |" in text and "taken with a load average" in text
    assert "| one-face webcam, 640x480 |" in printed


def test_a_model_that_is_no_bundle_is_refused_in_one_line(tmp_path, capsys):
    assert capacity.main(["--quick", "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a bundle folder" in err and "nowhere" in err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.slow
def test_quick_bench_capacity_of_a_trained_bundle_writes_its_own_table(tmp_path):
    """What a GPU box runs (scripts/gpu-check.sh): the same table with a bundle's model, on this CPU."""
    from tests.inference.tiny_bundles import build

    bundle = build("frame", tmp_path / "frame", tflite=True)
    out, md = tmp_path / "capacity.json", tmp_path / "RESULTS.md"
    assert capacity.main(["--quick", "--model", str(bundle), "--engine", "tflite", "--out", str(out),
                          "--results-md", str(md)]) == 0
    r = json.loads(out.read_text())
    assert r["inputs"]["model"] == str(bundle) and r["inputs"]["engine"] == "tflite"
    (case,) = r["cases"]
    assert case["kernels"]["engine"] == "tflite" and case["kernels"]["model_ms"] > 0
    assert all(run["exit_code"] == 0 and run["frames_through"] == run["frames_expected"] for run in case["runs"])
    assert "the bundle frame (ENGINE=tflite)" in md.read_text()


def _timing(decode: float, detection: float, model: float) -> dict:
    frame = decode + detection + model
    return {"decode_ms": decode, "detection_ms": detection, "model_ms": model, "frame_ms": frame,
            "frames_timed": 16, "cores": 2, "limit_streams": round(2 / (2 * frame / 1000), 1)}


def test_the_limit_comes_from_the_median_of_every_kernel_timing():
    """A VM whose speed drifts: one slow moment (or one fast one) among the timings moves no figure."""
    timings = [_timing(1, 3, 5), _timing(1, 3, 12), _timing(1, 2, 5), _timing(1, 4, 5), _timing(2, 3, 5)]
    k = capacity.kernels_median(timings)
    assert k["frame_ms"] == 10 and (k["decode_ms"], k["detection_ms"], k["model_ms"]) in {(2, 3, 5), (1, 4, 5)}
    assert k["limit_streams"] == 100.0 and k["frames_timed"] == 80
    assert k["frame_ms_timings"] == [9, 16, 8, 10, 10]  # in the order taken
    # An even number: the faster of the middle two (a slow moment must not lower the limit and flatter the ratio).
    assert capacity.kernels_median([_timing(1, 1, 7), _timing(1, 1, 2), _timing(1, 1, 12), _timing(1, 1, 4)])[
        "frame_ms"] == 6
    with pytest.raises(ValueError):
        capacity.kernels_median([])


def test_the_services_cost_a_frame_is_their_cpu_over_the_frames_a_second():
    # 40 streams at 2 FPS on 150 % of a core: 1500 ms a second over 80 frames.
    cost = capacity.services_cost({"cpu_percent_all": 150.0, "streams": 40}, kernel_frame_ms=15.0)
    assert cost == {"services_ms_per_frame": 18.75, "kernels_share": 0.8}


def test_the_kernels_wait_for_a_quiet_box_and_not_for_ever(monkeypatch):
    """The kernels are timed once the box's CPU has settled (a case's last trial still going away inflated
    them); a box that stays busy gets its kernels timed all the same when the wait is over."""
    seen = iter([90.0, 70.0, 10.0, 95.0])
    monkeypatch.setattr(capacity.psutil, "cpu_percent", lambda interval: next(seen))
    assert capacity.wait_for_quiet(busy_below=0.25, seconds=30) == 0.10
    assert capacity.wait_for_quiet(busy_below=0.25, seconds=0) == 0.95  # no time left: the share seen once


@pytest.mark.parametrize("flags, said", [
    (["--max-streams", "0"], "--max-streams and --confirm at least 1"),
    (["--confirm", "0"], "--max-streams and --confirm at least 1"),
    (["--seconds", "-1"], "--seconds and --p99-ms must be positive"),
    (["--p99-ms", "0"], "--seconds and --p99-ms must be positive"),
    (["--out", "{tmp}/missing/c.json"], "--out {tmp}/missing/c.json: cannot be written (No such file or directory)"),
    (["--results-md", "/proc/RESULTS.md"], "--results-md /proc/RESULTS.md: cannot be written"),
])
def test_unusable_arguments_are_refused_before_the_first_trial(tmp_path, capsys, flags, said):
    """A run takes up to half an hour: what would have failed at its end (its figures lost) fails at once."""
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    out = ["--out", str(tmp_path / "c.json")] if "--out" not in flags else []
    assert capacity.main([*out, *flags]) == 2  # every case: refused before any work
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and said.replace("{tmp}", str(tmp_path)) in err
    assert list(tmp_path.iterdir()) == []  # the check for a writable --out leaves nothing behind


def test_merge_into_a_file_that_holds_no_results_is_refused(tmp_path, capsys):
    out = tmp_path / "c.json"
    out.write_text('{"not": "results"}')
    assert capacity.main(["--merge", "--out", str(out)]) == 2
    assert "--merge: " in capsys.readouterr().err and out.read_text() == '{"not": "results"}'


def test_a_stop_ends_the_whole_bench_in_one_line_and_leaves_nothing(tmp_path):
    """SIGTERM while a trial's class runs: `engagement run` ends that class as it would its own, and then the
    bench stops (it went on with the next count), says so, and removes its trials' folder."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path)}
    bench = subprocess.Popen([sys.executable, "-m", "engagement.cli", "bench-capacity", "--quick", "--out",
                              str(tmp_path / "c.json")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        for line in bench.stdout:  # the first trial's class has started
            if line.startswith("live: "):
                break
        services = psutil.Process(bench.pid).children(recursive=True)
        assert services  # the class's services, running
        bench.send_signal(signal.SIGTERM)
        _, err = bench.communicate(timeout=120)
    finally:
        bench.kill()
    assert bench.returncode == 130
    assert err.strip().splitlines()[-1] == "engagement bench-capacity: interrupted: no figures written"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no figures, no trials' folder
    assert not [p for p in services if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # none left running
