"""`engagement run --source A --source B`: one class, one capture per source (issue 15, part 4).

What a run with two sources plans (streams, per-capture environment, links), how its checks
name the stream whose source is bad, and that Ctrl-C stops every capture and leaves nothing
running. Whole classes of two streams, with their report, are in tests/e2e/test_streams.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from services.launcher import main as launcher
from services.launcher.launch_settings import LaunchSettings, resolve_run
from services.launcher.plan import RUN_SERVICES, plan_environment, services_of
from services.launcher.streams import Stream, derived_id, plan_streams
from shared.bus.bus import SocketSpec
from shared.ops.config import SettingError
from tests.support.env import REDIS_URL
from tests.support.runs import engagement, listing, processes_from, wait_gone


def test_sources_are_named_by_their_id_or_after_the_source():
    assert plan_streams(["class.avi"], "cam0") == [Stream("cam0", "class.avi")]  # one source: as before
    assert plan_streams(["front@1.5=class.avi"], "cam0") == [Stream("front", "class.avi", 1.5)]
    streams = plan_streams(["/videos/room 1.avi", "2", "rtsp://user:pw@10.0.0.7:554/live?a=b",
                            "back=/v/x.avi", "/other/room 1.avi", "screen:1"], "cam0")
    assert [s.id for s in streams] == ["room-1", "cam2", "10.0.0.7-live", "back", "room-1-2", "screen"]
    assert streams[2].source == "rtsp://user:pw@10.0.0.7:554/live?a=b"  # a URL with '=' is not a name
    from_file = plan_streams([{"id": "front", "source": "a.avi", "fps": 1}, {"source": "b.avi"}], "cam0")
    assert from_file == [Stream("front", "a.avi", 1.0), Stream("b", "b.avi")]
    assert derived_id("0") == "cam0"
    assert derived_id("/dev/video2") == "cam2"


def test_a_camera_device_path_is_a_live_camera_and_a_missing_one_says_so(tmp_path):
    from services.launcher.checks import Context, run_checks  # noqa: PLC0415
    from shared.vision.screen import source_kind  # noqa: PLC0415

    assert [source_kind(s) for s in ("0", "/dev/video2", "/dev/video2.avi", "/tmp/x.avi")] == \
        ["camera", "camera", "file", "file"]
    values = _values(["/dev/video97"], "--report-dir", str(tmp_path))
    [row] = [r for r in run_checks(Context(values, private_redis=False)) if r.name.startswith("source")]
    assert not row.ok and "camera /dev/video97 does not open" in row.line(), row.line()
    with pytest.raises(SettingError, match="names stream 'front' twice"):
        plan_streams(["front=a.avi", "front=b.avi"], "cam0")
    with pytest.raises(SettingError, match="fps 'fast' is not a number"):
        plan_streams([{"source": "a.avi", "fps": "fast"}, "b.avi"], "cam0")


def _values(sources: list[str], *extra: str) -> LaunchSettings:
    args = launcher.build_parser().parse_args(
        [arg for s in sources for arg in ("--source", s)] + ["--model", "baseline", "--redis-url", REDIS_URL, *extra])
    return resolve_run(args)


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_each_capture_binds_its_own_frames_and_facedetect_and_the_reporter_read_them_all(tmp_path, transport):
    values = _values(["front@1=a.avi", "b.avi"], "--fps", "3", "--transport", transport)
    envs = plan_environment(values, REDIS_URL, str(tmp_path) if transport == "ipc" else "")
    assert services_of(envs) == ["capture-front", "capture-b", "facedetect", "inference",  # the baseline: no sequencer
                                 "aggregator", "reporter", "web"]
    front, back = envs["capture-front"], envs["capture-b"]
    assert (front["SOURCE"], front["STREAM_ID"], front["FPS"]) == ("a.avi", "front", "1")
    assert (back["SOURCE"], back["STREAM_ID"], back["FPS"]) == ("b.avi", "b", "3.0")  # the run's FPS
    assert all(env["STREAMS"] == "front,b" for env in envs.values())
    assert len({env["SESSION_ID"] for env in envs.values()}) == 1
    frames_in = SocketSpec.parse(envs["facedetect"]["FRAMES_IN"])
    assert frames_in.type == "pull" and not frames_in.bind
    assert frames_in.endpoints == [SocketSpec.parse(env["FRAMES_OUT"]).endpoint for env in (front, back)]
    assert front["FRAMES_OUT"] != back["FRAMES_OUT"]
    preview_in = SocketSpec.parse(envs["reporter"]["PREVIEW_IN"])
    assert preview_in.bind and front["PREVIEW_OUT"] == back["PREVIEW_OUT"] == f"pub+connect:{preview_in.endpoint}"
    assert len({env["METRICS_PORT"] for env in envs.values()}) == len(envs)


def test_one_source_runs_exactly_as_before():
    envs = plan_environment(_values(["class.avi"]), REDIS_URL)
    assert set(envs) == set(RUN_SERVICES) - {"sequencer"}  # the baseline takes each frame's faces as they are
    assert envs["capture"]["STREAM_ID"] == "cam0" and envs["capture"]["STREAMS"] == ""
    assert "SAMPLE_PHASE" not in envs["capture"]


def test_several_captures_sample_in_turn_over_the_period_not_all_at_once():
    from services.capture.service import phase_delay

    envs = plan_environment(_values(["a.avi", "b.avi", "c.avi"]), REDIS_URL)
    phases = [envs[f"capture-{name}"]["SAMPLE_PHASE"] for name in "abc"]
    assert phases == ["0.0000", "0.3333", "0.6667"]
    # At 2 FPS (0.5 s a sample) the three streams' frames come 1/6 s apart, the first at once.
    assert [round(phase_delay(phase, 0.5), 3) for phase in phases] == [0.0, 0.167, 0.333]
    assert phase_delay("", 0.5) == phase_delay("0.5", 0.0) == phase_delay("nan", 0.5) == phase_delay("x", 0.5) == 0.0


def test_a_large_class_starts_in_waves_of_at_most_four_streams():
    from services.capture.service import start_delay

    small = plan_environment(_values([f"s{i}={i}.avi" for i in range(4)]), REDIS_URL)
    assert not any("CLASS_START_DELAY" in env for env in small.values())  # 4 streams start together
    names = [f"s{i}" for i in range(10)]
    envs = plan_environment(_values([f"{name}={name}.avi" for name in names]), REDIS_URL)
    delays = [start_delay(envs[f"capture-{name}"]["CLASS_START_DELAY"]) for name in names]
    assert sorted(set(delays)) == [0.0, 0.5, 1.0]  # three waves, half a second apart
    assert max(delays.count(d) for d in set(delays)) <= 4
    # Neighbours in the sampling period are in different waves: a wave's streams stay spread over it.
    assert delays[:4] == [0.0, 0.5, 1.0, 0.0]
    assert start_delay("") == start_delay("x") == start_delay("-1") == 0.0 and start_delay("1e9") == 120.0
    huge = plan_environment(_values([f"s{i}={i}.avi" for i in range(100)]), REDIS_URL)
    assert max(start_delay(env.get("CLASS_START_DELAY", "")) for env in huge.values()) == 3.5  # 8 waves at most


def test_check_and_run_name_the_stream_whose_source_is_bad(classroom):
    before = listing(classroom)
    out = engagement(classroom, "check", "--source", "front=class.avi", "--source", "back=missing.avi",
                     "--redis-url", REDIS_URL)
    assert out.code == 2, out.out + out.err
    rows = {line.split("  ")[0].strip(): line for line in out.out.splitlines()[1:]}
    assert " ok " in rows["source front"] and "640x480" in rows["source front"]
    assert "FAIL" in rows["source back"] and "video file missing.avi does not exist" in rows["source back"]
    assert "source" not in rows  # one row per stream, not one for the first source
    run = engagement(classroom, "run", "--source", "front=class.avi", "--source", "back=missing.avi",
                     "--redis-url", REDIS_URL, timeout=30)
    assert run.code == 2 and run.err_lines == [
        "engagement run: source back: video file missing.avi does not exist; fix: give the path of a video file, "
        "a camera index (0) or an RTSP/HTTP URL to --source"]
    assert processes_from(classroom) == [] and listing(classroom) == before
    twice = engagement(classroom, "run", "--source", "a=class.avi", "--source", "a=class.avi", timeout=30)
    assert twice.code == 2 and len(twice.err_lines) == 1 and "names stream 'a' twice" in twice.err


def test_ctrl_c_stops_every_capture_and_leaves_nothing_running(classroom, one_face_video):
    os.link(one_face_video["path"], classroom / "back.avi")
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPORT_DIR", "FPS", "RECORD")}
    proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "run", "--source", "front=class.avi",
                             "--source", "back=back.avi", "--realtime", "--redis-url", REDIS_URL],
                            cwd=classroom, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until both captures run
        assert proc.poll() is None, proc.communicate()
        captures = [p for p in processes_from(classroom) if p.cmdline()[-1:] == ["capture"]]
        if len(captures) == 2:
            break
        time.sleep(0.2)
    assert len(captures) == 2, "two captures never ran"
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert err.count("stream front") >= 1 and err.count("stream back") >= 1  # each capture ran its stream
    assert "report: " in out
    assert wait_gone(classroom) == []


def test_the_config_file_lists_the_sources_with_their_ids_and_fps(tmp_path):
    config = tmp_path / "class.yaml"
    config.write_text("source:\n  - {id: front, source: a.avi, fps: 1}\n  - back=b.avi\nfps: 3\n")
    args = launcher.build_parser().parse_args(["--config", str(config), "--redis-url", REDIS_URL])
    values = resolve_run(args)
    assert values.sources == [Stream("front", "a.avi", 1.0), Stream("back", "b.avi")]
    assert (values.capture.source, values.common.stream_id, values.common.streams) == ("a.avi", "front", "front,back")
    envs = plan_environment(values, REDIS_URL)
    assert (envs["capture-back"]["SOURCE"], envs["capture-back"]["FPS"]) == ("b.avi", "3.0")
    # A flag wins over the file, as for every setting.
    flagged = resolve_run(launcher.build_parser().parse_args(
        ["--config", str(config), "--source", "c.avi", "--redis-url", REDIS_URL]))
    assert flagged.sources == [Stream("cam0", "c.avi")]
