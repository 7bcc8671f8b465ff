"""The benchmark in its tiniest form writes every figure it promises (no speed asserts).

Real parts throughout: the launcher starts every service as a process on a real video with
real faces, a real (tiny) MobileNetV2 bundle, real ZeroMQ hops. Only the sizes are small.
"""

from __future__ import annotations

import json

import pytest

from bench import bench

PIPELINE_KEYS = {"fps", "frames_captured", "frames_through", "frames_dropped", "drops_counted", "latency_ms",
                 "model_ms_per_face", "processes", "exit_code"}
STAGES = {"capture", "facedetect", "sequencer", "inference", "aggregator", "capture_to_prediction"}
# Both models are frame models: `engagement run` starts no sequencer (inference reads facedetect's faces).
SERVICES = {"capture", "facedetect", "inference", "aggregator", "reporter"}


def test_quick_bench_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "results.json"
    code = bench.main(["--quick", "--out", str(out), "--work-dir", str(tmp_path / "work"), "--seconds", "2",
                       "--loop-seconds", "1", "--soak-seconds", "3", "--image-size", "32", "--hops", "50"])
    assert code == 0
    r = json.loads(out.read_text())
    assert {"machine", "inputs", "bus", "engines", "loops", "pipeline", "soak", "summary", "targets"} <= set(r)

    assert set(r["pipeline"]) == {f"{m}_{n}_{rate}" for m in ("bundle", "baseline") for n in (1, 8)
                                  for rate in ("2fps", "unthrottled")}
    for label, run in r["pipeline"].items():
        assert PIPELINE_KEYS <= set(run), label
        assert run["exit_code"] == 0, label
        assert run["frames_through"] > 0, label
        # Every frame captured is through once or dropped and counted where it was dropped, exactly.
        assert run["updates_repeated"] == 0, (label, run)
        assert run["frames_through"] + run["drops_counted"] == run["frames_captured"], (label, run)
        assert STAGES <= set(run["latency_ms"]), label
        assert {"p50", "p99"} <= set(run["latency_ms"]["capture_to_prediction"]), label
        assert SERVICES <= set(run["processes"]), label
        # Each process's figures were sampled, not left empty.
        assert all(p["peak_rss_mb"] > 0 for p in run["processes"].values()), label
    # The 8-face video puts 8 faces in front of the pipeline.
    assert r["pipeline"]["bundle_8_unthrottled"]["faces_per_frame"] == 8

    assert set(r["loops"]) == {f"{m}_{n}" for m in ("reference", "best", "baseline") for n in (1, 8)}
    for loop in r["loops"].values():
        assert loop["frames"] > 0 and loop["fps"] > 0
        assert {"read", "detect", "crop", "classify", "overlay"} <= set(loop["stages_ms"])
    assert r["loops"]["reference_8"]["engine"] == "predict"

    assert r["bus"]["received"] == r["bus"]["sent"] == 50
    assert r["bus"]["hop_ms"]["p99"] is not None
    assert {row["engine"] for row in r["engines"]["rows"]} == {"keras", "tflite", "predict", "onnx"}
    onnx = next(row for row in r["engines"]["rows"] if row["engine"] == "onnx")
    assert onnx["device"] == "cpu" and onnx["max_abs_diff_vs_keras"] < 1e-3  # no GPU here: the CPU provider
    assert r["engines"]["auto_choice"] in {"keras", "tflite", "predict", "onnx"}
    assert SERVICES <= set(r["soak"]["memory"])
    assert all("growth_percent" in m for m in r["soak"]["memory"].values())
    assert {"faces_1", "faces_8", "cost_per_face"} <= set(r["summary"])
    assert all({"target", "met", "detail"} <= set(t) for t in r["targets"])
    # The performance issue's targets, each beside the last results.
    assert r["pipeline_gallery"]["frames_through"] > 0
    assert len(r["issue_targets"]) == 6 and all({"now", "was", "met"} <= set(t) for t in r["issue_targets"])
    # Every detector measured on real faces: the default finds the astronaut in every frame she is in.
    rows = {row["detector"]: row for row in r["detectors"]["rows"]}
    assert {"blazeface", "blazeface_short", "blazeface_full", "dnn", "haar"} == set(rows)
    assert rows["blazeface"]["recall"]["astronaut"] == 1.0 and rows["blazeface"]["ms_per_frame"]["lfw"] > 0
    assert r["bus"]["ipc"]["received"] == 50

    printed = capsys.readouterr().out
    assert "### Throughput" in printed and "### Targets" in printed
    assert "### Face detectors on real faces" in printed and "### Targets of the performance issue" in printed


def test_only_the_sweep_runs_under_each_budget_it_names(tmp_path, capsys):
    """--only sweep: no other part; each budget reaches the service processes (their CPU affinity)."""
    out = tmp_path / "sweep.json"
    code = bench.main(["--quick", "--only", "sweep", "--budgets", "1,6", "--sweep-runs", "baseline_1_unthrottled",
                       "--out", str(out), "--work-dir", str(tmp_path / "work"), "--seconds", "2"])
    assert code == 0
    r = json.loads(out.read_text())
    assert r["parts"] == ["sweep"]
    assert not {"bus", "engines", "loops", "pipeline", "soak", "detectors", "pipeline_gallery"} & set(r)
    rows = r["budget_sweep"]
    assert [(row["number"], row["run"]) for row in rows] == [(1, "baseline_1_unthrottled"),
                                                             (6, "baseline_1_unthrottled")]
    assert all(row["fps"] and row["fps"] > 0 for row in rows)
    everywhere, pinned = rows[0]["processes"], rows[1]["processes"]
    assert len(everywhere["facedetect"]["cpus"]) == len(everywhere["inference"]["cpus"]) == min(2, len(
        everywhere["capture"]["cpus"]))
    # Budget 6: inference on CPU 1, the light stages on CPU 0 (on a one-core box both are 0).
    assert pinned["facedetect"]["cpus"] == pinned["capture"]["cpus"] == [0]
    assert pinned["inference"]["cpus"] in ([1], [0])
    printed = capsys.readouterr().out
    assert "### CPU budget sweep" in printed and "### Throughput" not in printed


@pytest.mark.slow
def test_only_one_pipeline_case_repeated(tmp_path):
    out = tmp_path / "one.json"
    code = bench.main(["--quick", "--only", "pipeline", "--runs", "baseline_8_2fps", "--repeat", "2",
                       "--out", str(out), "--work-dir", str(tmp_path / "work"), "--seconds", "2"])
    assert code == 0
    r = json.loads(out.read_text())
    assert set(r["pipeline"]) == {"baseline_8_2fps", "baseline_8_2fps#2"}
    assert all(run["frames_through"] > 0 and run["realtime"] for run in r["pipeline"].values())
    assert any(t["target"].startswith("2 FPS") for t in r["targets"])
