"""compose/docker-compose.cameras.yml: one capture container per camera, one class (issue 15).

Checked statically like the other compose files (no Docker engine here): the override merged
onto docker-compose.yml as `docker compose -f ... -f ...` merges it (maps merged key by key,
`extends` resolved), with the variables at their .env.example values.
"""

from __future__ import annotations

import copy
import re

import pytest

from shared.bus.bus import SocketSpec
from shared.bus.links import BY_NAME
from shared.ops.config import settings_for
from tests.deploy.tools import COMPOSE_DIR, env_example, load_yaml

CAPTURES = ["capture", "capture-2"]
EVERY_SERVICE = [*CAPTURES, "facedetect", "sequencer", "inference", "aggregator", "reporter", "web", "mqtt-bridge"]


def _merge(base: dict, override: dict) -> dict:
    """Compose's merge of an override: mappings merged key by key, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _render(value: str, env: dict[str, str]) -> str:
    """${VAR:-default} and ${VAR:?error} with the variables of .env.example."""
    def one(found: re.Match) -> str:
        name, how, rest = found.group(1), found.group(2) or "", found.group(3) or ""
        if env.get(name):
            return env[name]
        if how.endswith("?"):
            raise AssertionError(f"${{{name}}} is required: {rest}")
        return rest
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?([^}]*)\}", one, str(value))


@pytest.fixture(scope="module")
def class_env() -> dict[str, str]:
    text = (COMPOSE_DIR / ".env.example").read_text()
    env = dict(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", text, re.MULTILINE))
    env["SESSION_ID"] = "lecture-7"  # what the cameras file asks the user to set
    return env


@pytest.fixture(scope="module")
def merged() -> dict:
    base = load_yaml(COMPOSE_DIR / "docker-compose.yml")["services"]
    override = load_yaml(COMPOSE_DIR / "docker-compose.cameras.yml")["services"]
    services = _merge(base, override)
    second = services["capture-2"]
    parent = second.pop("extends")
    assert parent == {"file": "docker-compose.yml", "service": "capture"}
    inherited = {k: v for k, v in base[parent["service"]].items() if k != "depends_on"}  # not carried over
    services["capture-2"] = _merge(inherited, second)
    return services


def test_every_service_knows_both_streams_and_one_session(merged, class_env):
    streams = {name: _render(merged[name]["environment"]["STREAMS"], class_env) for name in EVERY_SERVICE}
    assert set(streams.values()) == {"cam0,cam1"}, streams
    ids = [_render(merged[name]["environment"]["STREAM_ID"], class_env) for name in CAPTURES]
    assert ids == ["cam0", "cam1"]  # STREAMS lists exactly the captures' streams
    sessions = {_render(merged[name]["environment"]["SESSION_ID"], class_env) for name in EVERY_SERVICE}
    assert sessions == {"lecture-7"}
    with pytest.raises(AssertionError, match="share one session"):
        _render(merged["capture-2"]["environment"]["SESSION_ID"], {**class_env, "SESSION_ID": ""})


def test_the_second_camera_is_a_capture_with_its_own_source_and_device(merged, class_env):
    first, second = merged["capture"], merged["capture-2"]
    assert second["command"] == ["capture"] and second["image"] == first["image"]
    assert second["depends_on"] == first["depends_on"]  # facedetect and the reporter first
    env = {k: _render(v, class_env) for k, v in second["environment"].items()}
    assert (env["SOURCE"], env["FPS"]) == ("1", "2")
    assert env["FRAMES_OUT"] == first["environment"]["FRAMES_OUT"] == BY_NAME["frames"].out_spec(host="0.0.0.0")
    assert [_render(d, class_env) for d in second["devices"]] == ["/dev/video1:/dev/video1"]
    own = {s.env for s in settings_for("capture")} | {"METRICS_PORT", "RES_OPTIONS"}  # RES_OPTIONS: glibc's
    assert set(env) <= own


def test_facedetect_and_the_reporter_read_every_camera(merged):
    for name, link in (("facedetect", BY_NAME["frames"]), ("reporter", BY_NAME["preview"])):
        spec = merged[name]["environment"][link.in_setting]
        assert spec == link.in_spec_from(CAPTURES), name
        assert [e.split("//")[1].split(":")[0] for e in SocketSpec.parse(spec).endpoints] == CAPTURES


def test_the_new_variables_are_documented():
    assigned, text = env_example()
    assert {"SOURCE2", "STREAM2_ID", "FPS2", "CAMERA2_DEVICE"} <= assigned
    assert "STREAMS" in text
