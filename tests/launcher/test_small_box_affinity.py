"""`engagement run` on a 2-core box with a trained model: the light stages share CPU 0, inference
may use both (the budget sweep's winner, bench/RESULTS.md); the baseline and bigger machines
are left alone, and a CPU_AFFINITY the user set always wins."""

from __future__ import annotations

import argparse

from services.launcher.launch_settings import resolve_run
from services.launcher.plan import RUN_SERVICES, plan_environment
from shared.ops import cpu_budget

LIGHT = {"capture", "facedetect", "sequencer", "aggregator", "reporter"}


def _envs(model: str, monkeypatch, source: str | list[str] = "x.avi") -> dict[str, dict[str, str]]:
    monkeypatch.setenv("SEQUENCE_LENGTH", "1")  # no bundle to read it from

    args = argparse.Namespace(model=model, session_id="s", source=source, report_dir="/tmp/r", fixed_ports=False,
                              web_port=8080)
    return plan_environment(resolve_run(args), "redis://127.0.0.1:6379/1")


def test_the_table_pins_the_light_stages_on_two_cores_only():
    assert cpu_budget.small_box_affinity(cpus=2) == dict.fromkeys(LIGHT, "0")
    assert cpu_budget.small_box_affinity(cpus=1) == dict.fromkeys(LIGHT, "0")
    assert cpu_budget.small_box_affinity(cpus=8) == {}


def test_a_trained_model_gets_the_small_box_pinning_and_the_baseline_does_not(monkeypatch, tmp_path):
    monkeypatch.delenv("CPU_AFFINITY", raising=False)
    expected = cpu_budget.small_box_affinity()  # this machine's: pinned on 2 cores, none on more
    bundle = _envs(str(tmp_path / "bundle"), monkeypatch)
    planned = [s for s in RUN_SERVICES if s in bundle]  # a frame model runs no sequencer
    assert {s: bundle[s].get("CPU_AFFINITY", "") for s in planned} == {s: expected.get(s, "") for s in planned}
    assert bundle["inference"].get("CPU_AFFINITY", "") == ""
    baseline = _envs("baseline", monkeypatch)
    assert all(not env.get("CPU_AFFINITY") for env in baseline.values())


def test_a_cpu_affinity_the_user_set_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("CPU_AFFINITY", "0-1")
    envs = _envs(str(tmp_path / "bundle"), monkeypatch)
    assert {env["CPU_AFFINITY"] for env in envs.values()} == {"0-1"}


def test_every_capture_of_a_class_with_several_streams_is_pinned_like_capture(monkeypatch, tmp_path):
    monkeypatch.delenv("CPU_AFFINITY", raising=False)
    expected = cpu_budget.small_box_affinity().get("capture", "")
    envs = _envs(str(tmp_path / "bundle"), monkeypatch, source=["a.avi", "b.avi"])
    captures = [name for name in envs if name.startswith("capture")]
    assert len(captures) == 2
    assert all(envs[name].get("CPU_AFFINITY", "") == expected for name in captures)
