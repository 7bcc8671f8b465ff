"""`engagement run` with a model of single crops sampled every frame runs no sequencer: inference reads
facedetect's faces (services/launcher/plan.py). A model of sequences, or a STRIDE over 1, keeps it."""

from __future__ import annotations

import pytest

from services.launcher import main as launcher
from services.launcher.launch_settings import resolve_run
from services.launcher.plan import plan_environment, services_of
from shared.bus.bus import SocketSpec
from tests.support.env import REDIS_URL


def _envs(tmp_path, *extra: str, transport: str = "tcp") -> dict[str, dict[str, str]]:
    args = launcher.build_parser().parse_args(["--source", "a.avi", "--source", "b.avi", "--model", "baseline",
                                               "--redis-url", REDIS_URL, "--transport", transport, *extra])
    return plan_environment(resolve_run(args), REDIS_URL, str(tmp_path) if transport == "ipc" else "")


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_the_baseline_runs_no_sequencer_and_inference_reads_facedetects_faces(tmp_path, monkeypatch, transport):
    monkeypatch.delenv("SEQUENCE_LENGTH", raising=False)
    monkeypatch.delenv("STRIDE", raising=False)
    envs = _envs(tmp_path, transport=transport)
    assert "sequencer" not in services_of(envs) and "sequencer" not in envs
    faces_out = SocketSpec.parse(envs["facedetect"]["FACES_OUT"])
    batches_in = SocketSpec.parse(envs["inference"]["BATCHES_IN"])
    assert faces_out.bind and faces_out.type == "push"
    assert not batches_in.bind and batches_in.type == "pull" and batches_in.endpoints == [faces_out.endpoint]
    # Nobody else reads facedetect's faces (a PUSH deals its messages round-robin to every reader).
    assert [name for name, env in envs.items() if faces_out.endpoint in env.get("FACES_IN", "")] == []


@pytest.mark.parametrize(("variable", "value"), [("SEQUENCE_LENGTH", "20"), ("STRIDE", "2")])
def test_a_model_of_sequences_or_a_stride_keeps_the_sequencer(tmp_path, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    envs = _envs(tmp_path)
    assert services_of(envs)[2:4] == ["facedetect", "sequencer"]
    assert envs["sequencer"]["FACES_IN"].rsplit(":", 1)[1] == envs["facedetect"]["FACES_OUT"].rsplit(":", 1)[1]
    assert envs["inference"]["BATCHES_IN"].rsplit(":", 1)[1] == envs["sequencer"]["BATCHES_OUT"].rsplit(":", 1)[1]
