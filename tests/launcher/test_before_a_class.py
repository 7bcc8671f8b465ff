"""Issue 12, before a class: each case a new user met, and what it gives now.

Every failure is found before anything starts: exit code 2 within 5 s, exactly one line
naming the problem and the fix, and nothing left running or on disk.
"""

from __future__ import annotations

import uuid

import pytest

from shared.ops.ports import free_ports
from tests.aggregator.harness import PrivateRedis
from tests.support.runs import engagement, listing, processes_from

CASES = [
    # (id, extra args, environment, the one line must contain)
    ("report dir not writable", ["--report-dir", "/proc/nope"], {},
     "report folder: cannot write reports to /proc/nope"),
    ("redis on a closed port", [], {"REDIS_URL": "redis://127.0.0.1:{closed}/0"},
     "redis: Redis at redis://127.0.0.1:{closed}/0 is not reachable"),
    ("redis with a wrong password", [], {"REDIS_URL": "redis://:wrong-9f3kq7x2m4v8@127.0.0.1:{pw_port}/0"},
     "redis: Redis at redis://***@127.0.0.1:{pw_port}/0 refused the password"),
    ("redis without its password", [], {"REDIS_URL": "redis://127.0.0.1:{pw_port}/0"},
     "redis: Redis at redis://127.0.0.1:{pw_port}/0 needs a password"),
    ("no such model bundle", ["--model", "no-such-bundle"], {},
     "model: model bundle no-such-bundle does not exist"),
    ("a word for FPS", [], {"FPS": "two"},
     "setting FPS='two' (environment) is not a number; allowed: a number from 0 to 240"),
    ("a bad flag value", ["--detector", "cnn"], {},
     "setting DETECTOR='cnn' (flag --detector) is not a choice; allowed: one of auto, blazeface, "
     "blazeface_short, blazeface_full, dnn, haar"),
    ("a missing file", ["--source", "missing.avi"], {}, "source: video file missing.avi does not exist"),
    ("a folder as source", ["--source", "."], {}, "source: . is a folder, not a video file"),
    ("not a video", ["--source", "notes.txt"], {}, "source: notes.txt has no frame OpenCV can decode"),
    ("no camera", ["--source", "9"], {}, "source: camera 9 does not open"),
    ("a bad reconnect", ["--reconnect", "sometimes"], {}, "setting RECONNECT='sometimes' is not allowed"),
    ("a missing config file", ["--config", "nope.yaml"], {}, "config file nope.yaml does not exist"),
    ("an example secret", [], {"REDIS_PASSWORD": "change-me"},
     "secrets: REDIS_PASSWORD is an example value anyone can guess"),
]


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory):
    """A Redis that wants a password (the shared one on 6379 has none)."""
    server = PrivateRedis(tmp_path_factory.mktemp("redis"), password="right-" + uuid.uuid4().hex)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kept_redis(tmp_path_factory):
    """A Redis that keeps its data over a restart (append-only file), as compose's does."""
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def forgetful_redis(tmp_path_factory):
    """A Redis that keeps nothing over a restart: appendonly no, no save points."""
    server = PrivateRedis(tmp_path_factory.mktemp("redis"), persistent=False)
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_bad_start_is_one_line_and_exit_2_before_anything_runs(classroom, password_redis, case):
    _, args, env, expected = case
    ports = {"closed": free_ports(1)[0], "pw_port": password_redis.port}
    env = {k: v.format(**ports) for k, v in env.items()}
    expected = expected.format(**ports)
    (classroom / "notes.txt").write_text("not a video\n")
    before = listing(classroom)
    source = [] if "--source" in args else ["--source", "class.avi"]
    out = engagement(classroom, "run", *source, *args, env=env, timeout=30)
    assert out.code == 2, out.err
    assert len(out.err_lines) == 1 and expected in out.err_lines[0], out.err
    assert "fix:" in out.err_lines[0] or "allowed:" in out.err_lines[0] or "--example" in out.err_lines[0]
    assert "Traceback" not in out.err and out.out == ""
    assert out.seconds < 5.0
    assert processes_from(classroom) == []
    assert listing(classroom) == before  # no report folder, no state folder, no Redis data


def test_check_prints_a_table_and_fails_on_each_problem(classroom, kept_redis):
    good = engagement(classroom, "check", "--source", "class.avi", "--redis-url", kept_redis.url)
    assert good.code == 0, good.out + good.err
    rows = {line.split()[0]: line for line in good.out.splitlines()[1:]}
    assert {"source", "report", "redis", "model", "ports"} <= set(rows)
    assert all(" ok " in row for row in rows.values()), good.out
    assert "640x480, processed at 640x480 (native), a frame decodes" in rows["source"] and good.seconds < 5.0
    before = listing(classroom)
    bad = engagement(classroom, "check", "--source", "missing.avi", "--report-dir", "/proc/nope",
                     env={"REDIS_URL": f"redis://127.0.0.1:{free_ports(1)[0]}/0"})
    assert bad.code == 2 and bad.seconds < 5.0
    failed = [line for line in bad.out.splitlines() if " FAIL " in line]
    assert [line.split()[0] for line in failed] == ["report", "source", "redis"], bad.out
    assert listing(classroom) == before and processes_from(classroom) == []


def test_a_config_file_sits_between_the_environment_and_the_defaults(classroom):
    example = engagement(classroom, "config", "--example")
    assert example.code == 0 and "fps: 2.0" in example.out and "smoothing_seconds: 1.0" in example.out
    (classroom / "engagement.yaml").write_text(example.out.replace("fps: 2.0", "fps: two"))
    out = engagement(classroom, "check", "--config", "engagement.yaml", "--source", "class.avi")
    assert out.code == 2 and out.err_lines == [
        "engagement check: setting FPS='two' (config file engagement.yaml) is not a number; allowed: a number "
        "from 0 to 240, default 2.0"]
    (classroom / "engagement.yaml").write_text("fsp: 1\n")
    out = engagement(classroom, "check", "--config", "engagement.yaml", "--source", "class.avi")
    assert out.code == 2 and "unknown setting 'fsp' (did you mean fps?)" in out.err_lines[0]


def test_run_takes_every_pipeline_setting_as_a_flag_grouped_by_service(tmp_path):
    from shared.ops.config import SERVICES

    out = engagement(tmp_path, "run", "--help")
    assert out.code == 0
    for service in ("capture", "facedetect", "sequencer", "inference", "aggregator", "reporter"):
        assert f"\n{service} settings:\n" in out.out
        for s in SERVICES[service]:
            if not s.env.endswith(("_IN", "_OUT")):  # links: the launcher wires them itself
                assert f"{s.flag} " in out.out, s.env
    assert "-r [RECORD]" in out.out and "-m [MESSAGING]" in out.out
    assert "also an environment variable" in out.out and "config --example" in out.out


def test_a_redis_that_keeps_nothing_over_a_restart_is_said_by_check_and_run(classroom, forgetful_redis):
    # Without an append-only file or save points, a restarted Redis comes back empty: the aggregator refills
    # the totals from its journal, but the teacher's marks live only there. The class still runs.
    check = engagement(classroom, "check", "--source", "class.avi", "--redis-url", forgetful_redis.url)
    rows = {line.split()[0]: line for line in check.out.splitlines()[1:]}
    assert check.code == 0 and " warn " in rows["redis"], check.out
    assert "keeps nothing over a restart" in rows["redis"] and "turn appendonly on" in rows["redis"]
    assert all(" ok " in row for name, row in rows.items() if name != "redis"), check.out
    run = engagement(classroom, "run", "--source", "class.avi", "--redis-url", forgetful_redis.url,
                     "--report-dir", "reports", timeout=120)
    assert run.code == 0, run.err
    said = [line for line in run.err.splitlines() if "launcher WARNING check redis:" in line]
    assert len(said) == 1 and "keeps nothing over a restart" in said[0], run.err
    assert len(list((classroom / "reports").glob("*.json"))) == 1
