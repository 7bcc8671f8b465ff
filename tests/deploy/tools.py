"""Paths and helpers shared by the deployment checks (no Docker engine or cluster runs here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from engagement.cli import SERVICE_CLASSES
from shared.ops.config import REPO_ROOT
from tests.support.executables import find_executable

COMPOSE_DIR = REPO_ROOT / "compose"
K8S_DIR = REPO_ROOT / "k8s"
COMPOSE_FILES = [COMPOSE_DIR / "docker-compose.yml", COMPOSE_DIR / "docker-compose.jetson.yml",
                 COMPOSE_DIR / "docker-compose.agx-orin.yml", COMPOSE_DIR / "docker-compose.cameras.yml",
                 COMPOSE_DIR / "docker-compose.no-registry.yml",  # make compose-test: images from Debian
                 COMPOSE_DIR / "docker-compose.xavier.yml"]
DASHBOARD = COMPOSE_DIR / "grafana" / "dashboards" / "engagement.json"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; $$ is a literal dollar.
_INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:]?[-?][^}]*)?\}")


def tool(name: str) -> str:
    """Path of a CLI that the `test` extra or setup.sh installs; a clear failure (not a skip) when it is missing."""
    path = find_executable(name)
    assert path, f"{name} is neither in {sys.prefix}/bin nor on PATH: run ./scripts/setup.sh"
    return path


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def interpolated_names(text: str) -> set[str]:
    return set(_INTERPOLATION.findall(text))


def env_example() -> tuple[set[str], str]:
    """Names assigned in compose/.env.example, and its whole text (comments document fixed values)."""
    text = (COMPOSE_DIR / ".env.example").read_text()
    assigned = {m.group(1) for m in re.finditer(r"^([A-Za-z_][A-Za-z0-9_]*)=", text, re.MULTILINE)}
    return assigned, text


# --- the Grafana dashboard's metrics ----------------------------------------------------
_METRIC = re.compile(r"\bengagement_[a-z0-9_]+\b")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum"),
             "info": ("_info",)}


def dashboard_exprs() -> list[str]:
    import json

    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def sample_names(family: str, kind: str) -> set[str]:
    """Series names a metric family exposes (a counter `x` is scraped as `x_total`, ...)."""
    if kind == "counter" and family.endswith("_total"):
        family = family[: -len("_total")]
    return {family + suffix for suffix in _SUFFIXES.get(kind, ("",))}


def exposed_names(exposition: str) -> set[str]:
    """Every series name announced by `# TYPE` lines of a /metrics page, samples or not yet."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(None, 3)
            names |= sample_names(family, kind.strip())
    return names


def registry_names() -> set[str]:
    """Series names registered by shared.bus.metrics and every service module of the pipeline."""
    for load_service_class in SERVICE_CLASSES.values():
        load_service_class()  # imports the service's module, which registers its series
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= sample_names(family.name, family.type)
        names |= {s.name for s in family.samples}
    return names
