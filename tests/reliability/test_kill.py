"""Fault 1: every service SIGKILLed in turn mid-stream; nothing lost, nothing counted twice.

The real pipeline runs (`engagement run`, six processes, real Redis) on a video paced in
wall-clock time. Each service in turn is first frozen (SIGSTOP, so its input queue fills as
a hung process's would) and then SIGKILLed; the launcher restarts it. The test measures
how soon the pipeline resumes (kill -> the first prediction that the restarted stage
handled reaches the tap; for the aggregator the next Redis write; for the reporter its
health check) and checks that the report's totals equal what inference published, each
(session, stream, seq) once.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from shared.data.totals import Store
from tests.reliability.harness import LauncherRun, report_figures, service_pid, wait_healthy
from tests.support.env import REDIS_URL
from tests.support.waiting import wait_for

FREEZE_SECONDS = 1.5  # frozen this long before the kill: messages wait in its queues
GAP_SECONDS = 2.0  # between one service's recovery and the next fault
RESUME_TARGET = 5.0  # seconds (issue 7); printed, not asserted (the machine is shared)


def _resume_seconds(run: LauncherRun, name: str, pid: int, killed_at: float, killed_wall: float) -> float | None:
    if name == "aggregator":
        store = Store.from_url(REDIS_URL)
        before = store.session_totals(run.session)["frames"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if store.session_totals(run.session)["frames"] > before:
                return time.monotonic() - killed_at
            time.sleep(0.05)
        return None
    if name == "reporter":
        new = service_pid(name)
        while new == pid:
            time.sleep(0.05)
            new = service_pid(name)
        wait_healthy(run.metrics_port(name))
        return time.monotonic() - killed_at
    arrived = run.tap.first_handled_after(name, killed_wall, timeout=60)
    return None if arrived is None else arrived - killed_at


def kill_in_turn(order: list[str], resumed: dict[str, float | None]):
    def fault(run: LauncherRun) -> None:
        run.wait_for_predictions(4)
        for name in order:
            pid = service_pid(name)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(FREEZE_SECONDS)
            killed_at, killed_wall = time.monotonic(), time.time()
            os.kill(pid, signal.SIGKILL)
            resumed[name] = _resume_seconds(run, name, pid, killed_at, killed_wall)
            assert service_pid(name) != pid
            time.sleep(GAP_SECONDS)
    return fault


def _check_nothing_lost(run: LauncherRun, title: str, resumed: dict[str, float | None]) -> None:
    report = run.report()
    published = run.tap.published()
    totals = report["totals"]
    lost = published["predictions"] - totals["predictions"]
    report_figures(title, faults_injected=len(resumed), faults_survived=sum(v is not None for v in resumed.values()),
                   resume_seconds={k: None if v is None else round(v, 2) for k, v in resumed.items()},
                   within_target=all(v is not None and v <= RESUME_TARGET for v in resumed.values()),
                   published_frames=published["frames"], reported_frames=totals["frames"],
                   published_predictions=published["predictions"], reported_predictions=totals["predictions"],
                   predictions_lost=lost, resent_or_replayed=run.tap.duplicates)
    assert all(v is not None for v in resumed.values()), f"a service did not come back: {resumed}"
    assert published["predictions"] > 0
    # Neither lost nor counted twice: the report equals what inference published, by level.
    assert totals["frames"] == published["frames"]
    assert totals["predictions"] == published["predictions"]
    assert {int(k): v for k, v in totals["levels"].items() if v} == published["levels"]


@pytest.mark.parametrize("stride", ["1", "2"])
def test_sigkill_each_service_in_turn_mid_stream(long_video, tmp_path, stride):
    # Capture first: a restarted file source starts the file again (same session, same
    # sequence numbers), which the idempotent aggregator must not count twice. The baseline at
    # STRIDE 1 runs no sequencer (inference reads facedetect's faces); at STRIDE 2 it does.
    order = ["capture", "facedetect", *(["sequencer"] if stride != "1" else []), "inference", "aggregator", "reporter"]
    resumed: dict[str, float | None] = {}
    run = LauncherRun(long_video["path"], tmp_path, REDIS_URL, env={"REALTIME": "1", "STRIDE": stride})
    code = run.run(kill_in_turn(order, resumed))
    assert code == 0
    _check_nothing_lost(run, f"sigkill-each-service-stride-{stride}", resumed)


@pytest.mark.slow
def test_sigkill_aggregator_and_reporter_repeatedly(long_video, tmp_path):
    """The stages that hold the product's data, killed three times each."""
    order = ["aggregator", "reporter"] * 3
    resumed: dict[str, float | None] = {}
    run = LauncherRun(long_video["path"], tmp_path, REDIS_URL, env={"REALTIME": "1"})

    def fault(run: LauncherRun) -> None:
        for i, name in enumerate(order):
            single: dict[str, float | None] = {}
            kill_in_turn([name], single)(run)
            resumed[f"{name}#{i // 2 + 1}"] = single[name]

    assert run.run(fault) == 0
    _check_nothing_lost(run, "sigkill-repeated", resumed)


def test_reporter_killed_holding_the_sessions_eos_still_writes_the_report(short_video, tmp_path):
    """The worst moment for the reporter: the session's eos waits in its queue when it dies."""
    seen: dict[str, float] = {}

    def fault(run: LauncherRun) -> None:
        run.wait_for_predictions(1)
        pid = service_pid("reporter")
        os.kill(pid, signal.SIGSTOP)
        store = Store.from_url(REDIS_URL)
        # the aggregator marked the session ended, and so sent eos on to the frozen reporter
        wait_for(lambda: store.session_meta(run.session)["ended"] is not None, "the session's end", timeout=120)
        time.sleep(0.5)  # the eos on its way into the frozen reporter's socket: nothing to observe
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        json_path = run.report_dir / f"{run.session}.json"
        wait_for(json_path.exists, "the report after the reporter came back", timeout=120)
        seen["report_after_kill_s"] = round(time.monotonic() - killed_at, 2)

    run = LauncherRun(short_video["path"], tmp_path, REDIS_URL)
    assert run.run(fault) == 0
    report, published = run.report(), run.tap.published()
    report_figures("reporter-killed-at-eos", faults_injected=1, faults_survived=1, **seen,
                   published_predictions=published["predictions"],
                   reported_predictions=report["totals"]["predictions"],
                   predictions_lost=published["predictions"] - report["totals"]["predictions"])
    assert report["totals"]["predictions"] == published["predictions"] > 0
    assert report["totals"]["frames"] == published["frames"]
