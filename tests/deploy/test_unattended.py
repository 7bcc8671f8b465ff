"""compose/ for a box nobody watches: no secret in .env or the environment, nothing starts before the
secrets gate passes, published ports on loopback, every log rotated, and memory/CPU limits that
fit the two boards (Orin Nano 8 GB: docker-compose.yml; AGX Orin: + docker-compose.agx-orin.yml).

Static: no Docker engine runs here. The gate's own command runs for real in tests/shared."""

from __future__ import annotations

import re
import subprocess

import pytest

from shared.ops.secret_check import COMPOSE_SECRETS
from shared.ops.secret_files import NAMES
from tests.deploy.tools import COMPOSE_DIR, COMPOSE_FILES, env_example, load_yaml

BASE = load_yaml(COMPOSE_FILES[0])
AGX = load_yaml(COMPOSE_DIR / "docker-compose.agx-orin.yml")

# Board facts (NVIDIA's module data sheets). The OS, the GPU's share of the unified memory and
# the page cache need the rest: the sum of the limits stays under `budget`.
BOARDS = {
    "orin-nano-8gb": {"memory": 8 * 2**30, "cores": 6, "budget": 6 * 2**30},
    "agx-orin-32gb": {"memory": 32 * 2**30, "cores": 8, "budget": 24 * 2**30},
}
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def size(text: str | int) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(text).strip().lower())
    assert match, f"not a size: {text!r}"
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def limits_of(board: str) -> dict[str, dict[str, float]]:
    """Each service's {memory bytes, cpus} on a board, as compose merges the files."""
    out = {}
    for name, spec in BASE["services"].items():
        limits = dict(spec["deploy"]["resources"]["limits"])
        if board == "agx-orin-32gb" and name in AGX["services"]:
            limits.update(AGX["services"][name]["deploy"]["resources"]["limits"])
        out[name] = {"memory": size(limits["memory"]), "cpus": float(limits["cpus"])}
    return out


def test_no_secret_is_in_env_example_or_an_environment_variable_and_the_files_are_never_committed():
    # The secrets are files (compose `secrets:`, tests/deploy/test_compose_secrets.py): .env has none
    # to set, and no compose file reads one from the environment, where `docker inspect` shows it.
    assigned, _ = env_example()
    assert not set(COMPOSE_SECRETS) & assigned and "SECRETS_DIR" in assigned
    for path in COMPOSE_FILES:
        text = path.read_text()
        for name in (*COMPOSE_SECRETS, "REDISCLI_AUTH"):
            assert not re.search(rf"\$\{{{name}\b", text), f"{path.name} interpolates {name}"
        for service, spec in (load_yaml(path).get("services") or {}).items():
            env = spec.get("environment") or {}
            leaked = set(env) & {*COMPOSE_SECRETS, "REDIS_URL", "GF_SECURITY_ADMIN_PASSWORD", "REDISCLI_AUTH"}
            assert not leaked, f"{path.name}: {service} sets {leaked} as a variable"
    # Never committed (nor sent to an image build: the build's allow-list names no compose/ file).
    ignored = subprocess.run(["git", "check-ignore", "compose/secrets/web_token", "compose/.env"],
                             cwd=COMPOSE_DIR.parent, capture_output=True, text=True)
    assert ignored.stdout.split() == ["compose/secrets/web_token", "compose/.env"], ignored
    assert "!compose" not in (COMPOSE_DIR / "Dockerfile.dockerignore").read_text()


def test_nothing_starts_before_the_secrets_gate_passes():
    services = BASE["services"]
    gate = services["check-secrets"]
    assert gate["command"] == ["check-secrets", "--dir", "/run/secrets"] and gate["restart"] == "no"
    assert gate["secrets"] == list(NAMES)  # every secret file, checked before anything reads one

    def reaches_gate(name: str, seen: frozenset = frozenset()) -> bool:
        deps = services[name].get("depends_on") or {}
        return "check-secrets" in deps or any(reaches_gate(d, seen | {name}) for d in deps if d not in seen)

    # bus-keys runs before the gate (the gate waits for it): it makes the bus's key pair and reads no secret.
    assert not set(COMPOSE_SECRETS) & set(services["bus-keys"].get("environment") or {})
    assert not services["bus-keys"].get("secrets")
    late = [name for name in services if name not in ("check-secrets", "bus-keys") and not reaches_gate(name)]
    assert not late, f"these start without waiting for check-secrets: {late}"


def test_published_ports_bind_loopback_unless_the_admin_says_otherwise():
    assigned, text = env_example()
    published = {name: spec["ports"] for name, spec in BASE["services"].items() if spec.get("ports")}
    assert set(published) >= {"grafana", "prometheus"}
    for name, ports in published.items():
        for port in ports:
            # 127.0.0.1 written out, or ${X_BIND:-127.0.0.1} that the admin may change in .env.
            match = re.fullmatch(r"(?:127\.0\.0\.1|\$\{([A-Z_]+_BIND):-127\.0\.0\.1\}):(?:\$\{[A-Z_]+:-\d+\}|\d+):\d+",
                                 port)
            assert match, f"{name} publishes {port!r}: bind 127.0.0.1 or ${{X_BIND:-127.0.0.1}}"
            bind = match.group(1)
            if bind:
                assert re.search(rf"^{bind}=127\.0\.0\.1$", text, re.MULTILINE), f".env.example: {bind}=127.0.0.1"


def test_every_service_logs_with_rotation():
    for name, spec in BASE["services"].items():
        logging = spec.get("logging")
        assert logging, f"{name} has no logging limit"
        assert logging["driver"] in ("json-file", "local"), name
        assert re.fullmatch(r"\$\{LOG_MAX_SIZE:-\d+[km]\}", logging["options"]["max-size"]), name
        assert re.fullmatch(r"\$\{LOG_MAX_FILES:-\d+\}", str(logging["options"]["max-file"])), name
    assigned, _ = env_example()
    assert {"LOG_MAX_SIZE", "LOG_MAX_FILES"} <= assigned


@pytest.mark.parametrize("board", BOARDS)
def test_every_service_has_limits_that_fit_the_board(board):
    facts = BOARDS[board]
    limits = limits_of(board)
    total = sum(v["memory"] for v in limits.values())
    assert total <= facts["budget"], f"{board}: limits add up to {total / 2**30:.1f} GiB"
    for name, v in limits.items():
        assert 32 * 2**20 <= v["memory"] and 0 < v["cpus"] <= facts["cores"], (name, v)
    # One runaway stage cannot starve inference: every other service is capped at half the cores
    # or less, so at least half of them stay for inference.
    for name, v in limits.items():
        if name != "inference":
            assert v["cpus"] <= facts["cores"] / 2, f"{board}: {name} may take {v['cpus']} cores"
    assert limits["inference"]["memory"] == max(v["memory"] for v in limits.values())
    # Redis's maxmemory leaves room in its container for the append-only file's rewrite fork.
    redis_env = dict(BASE["services"]["redis"]["environment"])
    if board == "agx-orin-32gb":
        redis_env.update(AGX["services"]["redis"].get("environment", {}))
    assert size(redis_env["REDIS_MAXMEMORY"]) <= 0.75 * limits["redis"]["memory"]


def test_limits_table_in_compose_readme_matches_the_files():
    # The documented table is the one users size their box by: it must say what the files do.
    readme = (COMPOSE_DIR / "README.md").read_text()
    nano, agx = limits_of("orin-nano-8gb"), limits_of("agx-orin-32gb")
    for name in BASE["services"]:
        row = re.search(rf"^\| `{re.escape(name)}` \|([^|]*)\|([^|]*)\|([^|]*)\|([^|]*)\|", readme, re.MULTILINE)
        assert row, f"compose/README.md has no row for {name}"
        cells = [c.strip() for c in row.groups()]
        assert size(cells[0]) == nano[name]["memory"] and float(cells[1]) == nano[name]["cpus"], (name, cells)
        assert size(cells[2]) == agx[name]["memory"] and float(cells[3]) == agx[name]["cpus"], (name, cells)


def test_agx_override_only_raises_limits_of_known_services():
    assert set(AGX["services"]) <= set(BASE["services"])
    nano, agx = limits_of("orin-nano-8gb"), limits_of("agx-orin-32gb")
    for name in BASE["services"]:
        assert agx[name]["memory"] >= nano[name]["memory"] and agx[name]["cpus"] >= nano[name]["cpus"], name
