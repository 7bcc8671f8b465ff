"""training/docker_run.py: one training step as a container through the Docker SDK.

No Docker engine can run on these machines, so the engine is the one thing faked here: a
small stand-in for `docker.DockerClient` that records what it is asked and plays back a
container's output and exit status. The SDK's own argument handling (`_create_container_args`,
which builds the real HostConfig with the GPU DeviceRequest) and the real "no engine" path
run for real."""

from __future__ import annotations

import io
import logging

import docker
import pytest
from docker.errors import APIError, ImageNotFound
from docker.models.containers import _create_container_args

from training.docker_run import CANNOT_START, StepRun, container_kwargs, main, parse, run_step


class FakeContainer:
    def __init__(self, chunks: list[bytes], status: dict) -> None:
        self.id, self.name = "c0ffee", "engagement-train-step"
        self.chunks, self.status = chunks, status
        self.removed = self.stopped = False
        self.log_calls: list[dict] = []

    def logs(self, **kwargs):
        self.log_calls.append(kwargs)
        yield from self.chunks

    def wait(self):
        return self.status

    def stop(self, timeout=10):
        self.stopped = True

    def remove(self, force=False):
        self.removed = True


class FakeContainers:
    def __init__(self, container: FakeContainer | None, error: Exception | None = None) -> None:
        self.container, self.error = container, error
        self.calls: list[tuple[str, dict]] = []

    def run(self, image, **kwargs):
        self.calls.append((image, kwargs))
        if self.error:
            raise self.error
        return self.container


class FakeClient:
    """Stands in for docker.DockerClient (the engine): only `containers.run` is used."""

    def __init__(self, container=None, error=None) -> None:
        self.containers = FakeContainers(container, error)


def test_step_runs_with_a_gpu_streams_logs_and_returns_the_exit_code(tmp_path):
    # "é" split across two chunks: the stream must not garble it.
    container = FakeContainer([b"epoch 1/2 loss 1.3\n", b"caf\xc3", b"\xa9 done\n"], {"StatusCode": 3})
    client = FakeClient(container)
    out = io.StringIO()
    run = StepRun("train", ["--epochs", "2"], image="engagement-train:test", data_dir=tmp_path,
                  env={"LOG_LEVEL": "DEBUG"})
    assert run_step(run, client=client, out=out) == 3
    assert out.getvalue() == "epoch 1/2 loss 1.3\ncafé done\n"
    assert container.log_calls[0]["stream"] is True and container.log_calls[0]["follow"] is True
    assert container.removed
    image, kwargs = client.containers.calls[0]
    assert image == "engagement-train:test"
    assert kwargs["command"] == ["train", "--epochs", "2"]
    assert kwargs["detach"] is True
    [request] = kwargs["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert kwargs["volumes"] == {str(tmp_path.resolve()): {"bind": "/data", "mode": "rw"}}
    assert kwargs["environment"]["RUNS_DIR"] == "/data/runs" and kwargs["environment"]["LOG_LEVEL"] == "DEBUG"


def test_kwargs_are_accepted_by_the_real_sdk(tmp_path):
    # The SDK's own conversion (what containers.run does before calling the engine) must accept
    # every argument and put the GPU request into the HostConfig.
    kwargs = container_kwargs(StepRun("extract", ["--fps", "1"], gpus="0,1", data_dir=tmp_path, name="x"))
    kwargs.pop("detach")
    create = _create_container_args({**kwargs, "image": "engagement-train", "version": "1.45"})
    host = create["host_config"]
    assert host["DeviceRequests"] == [{"Driver": "", "Count": 0, "DeviceIDs": ["0", "1"],
                                       "Capabilities": [["gpu"]], "Options": {}}]
    assert host["Binds"] == [f"{tmp_path.resolve()}:/data:rw"]
    assert create["command"] == ["extract", "--fps", "1"]


@pytest.mark.parametrize(("gpus", "expected"), [("none", []), ("2", [2])])
def test_gpu_choice(gpus, expected):
    requests = container_kwargs(StepRun("faces", gpus=gpus))["device_requests"]
    assert [r["Count"] for r in requests] == expected


@pytest.mark.parametrize("error", [ImageNotFound("no such image"), APIError("could not select device driver")])
def test_a_container_that_cannot_start_gives_125_and_a_clear_line(error, caplog):
    caplog.set_level(logging.ERROR)
    assert run_step(StepRun("train"), client=FakeClient(error=error), out=io.StringIO()) == CANNOT_START
    assert caplog.records and caplog.records[-1].levelno == logging.ERROR


def test_interrupt_stops_and_removes_the_container():
    class Interrupted(FakeContainer):
        def logs(self, **kwargs):
            yield b"working\n"
            raise KeyboardInterrupt

    container = Interrupted([], {"StatusCode": 0})
    assert run_step(StepRun("extract"), client=FakeClient(container), out=io.StringIO()) == 130
    assert container.stopped and container.removed


def test_no_engine_here_is_reported_not_raised(caplog):
    # Real path: docker.from_env() against this machine, where no engine runs.
    with pytest.raises(docker.errors.DockerException):
        docker.from_env()
    caplog.set_level(logging.ERROR)
    assert main(["--gpus", "none", "labels"]) == CANNOT_START
    assert "no Docker engine reachable" in caplog.text


def test_command_line():
    run = parse(["--gpus", "none", "--data", "/srv/x", "--env", "A=1", "train", "--epochs", "3", "--fps", "2"])
    assert (run.step, run.args, run.gpus, run.env) == ("train", ["--epochs", "3", "--fps", "2"], "none", {"A": "1"})
    assert parse(["--", "evaluate", "--run", "runs/r1"]).args == ["--run", "runs/r1"]
    with pytest.raises(SystemExit):
        parse(["nosuchstep"])
