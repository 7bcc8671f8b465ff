"""compose/: the compose files against the Compose Specification schema, every variable in
.env.example, settings names and links consistent with shared/config.py, and the rules of
the deployment (non-root images, health-ordered start, only monitoring published).

A Docker engine cannot run on these machines, so nothing here starts a container: the files
are checked statically (schema + the project's own contracts)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from shared.cli import SERVICE_CLASSES
from shared.config import METRICS_PORTS, REPO_ROOT, SERVICES, env_names, settings_for
from shared.links import LINKS
from tests.deploy.tools import COMPOSE_DIR, COMPOSE_FILES, env_example, interpolated_names, load_yaml

PIPELINE = ["capture", "facedetect", "sequencer", "inference", "aggregator", "reporter"]
PUBLISHED_OK = {"grafana", "prometheus", "web"}  # what a user must reach from the host
NOT_PROJECT_SETTINGS = {"DISPLAY"}  # read by OpenCV's window (X11), not by shared/config.py


def compose_service_name(service: str) -> str:
    return service.replace("_", "-")  # DNS-friendly: mqtt_bridge runs as mqtt-bridge


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((COMPOSE_DIR / "schema" / "compose-spec.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILES[0])


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_specification(path, schema):
    jsonschema.Draft201909Validator(schema).validate(load_yaml(path))


def test_schema_rejects_a_broken_compose_file(schema, compose):
    # The validation above must be able to fail: a typo'd key is refused.
    broken = json.loads(json.dumps(compose))
    broken["services"]["capture"]["restartt"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(schema).validate(broken)


def test_every_interpolated_variable_is_in_env_example():
    assigned, _ = env_example()
    used = set().union(*(interpolated_names(p.read_text()) for p in COMPOSE_FILES))
    assert used, "no ${VAR} found: the pattern is broken"
    assert used - assigned == set(), f"add to compose/.env.example: {sorted(used - assigned)}"
    assert assigned - used == set(), f"in .env.example but used by no compose file: {sorted(assigned - used)}"


def test_every_setting_compose_sets_is_documented_and_real(compose):
    _, text = env_example()
    known = env_names()
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        project_service = name.replace("-", "_")
        if project_service not in SERVICE_CLASSES:
            continue  # redis, mosquitto, prometheus, grafana: their own images' variables
        if project_service not in SERVICES:
            continue  # its settings block is not written yet: checked as soon as it is
        own = {s.env for s in settings_for(project_service)} | {"METRICS_PORT"}
        for var in set(env) - NOT_PROJECT_SETTINGS:
            assert var in known, f"{name}: {var} is not a setting of the project (shared/config.py)"
            assert var in own, f"{name}: {var} is not a setting of the {project_service} service"
            assert re.search(rf"\b{var}\b", text), f"{var} (set for {name}) is not documented in .env.example"


def test_metrics_ports_and_health_checks(compose):
    for service in [*PIPELINE, "mqtt_bridge", "web"]:
        spec = compose["services"][compose_service_name(service)]
        assert spec["environment"]["METRICS_PORT"] == str(METRICS_PORTS[service])
        assert spec["environment"]["METRICS_HOST"] == "0.0.0.0"
        assert "/healthz" in " ".join(spec["healthcheck"]["test"])
        assert spec["restart"] == "unless-stopped"
        assert spec["command"] == [service]


def test_links_bind_on_the_producer_and_connect_to_it(compose):
    # Every link of the one link table (shared/links.py), and no other: same socket types and
    # ports as there; on the compose network the producer binds every interface and the
    # consumer connects to the producer's service name.
    services = compose["services"]
    wired = {(name, var): value for name, spec in services.items()
             for var, value in (spec.get("environment") or {}).items() if var.endswith(("_OUT", "_IN"))}
    expected = {}
    for link in LINKS:
        expected[(link.producer, link.out_setting)] = link.out_spec(host="0.0.0.0")
        expected[(link.consumer, link.in_setting)] = link.in_spec(host=link.producer)
    assert wired == expected


def test_consumers_wait_for_healthy_dependencies(compose):
    services = compose["services"]
    for name, spec in services.items():
        for dep, cond in (spec.get("depends_on") or {}).items():
            assert dep in services
            if dep == "check-secrets":  # the one-shot gate: it must have exited 0
                assert cond["condition"] == "service_completed_successfully", f"{name} -> {dep}"
                continue
            assert cond["condition"] == "service_healthy", f"{name} -> {dep}"
            assert "healthcheck" in services[dep], f"{dep} has no health check for {name} to wait on"
    # Every consumer of a link starts before its producer (PUSH sockets then never fill up).
    assert "facedetect" in services["capture"]["depends_on"]
    assert "inference" in services["sequencer"]["depends_on"]


def test_only_monitoring_is_published_and_one_network(compose):
    assert list(compose["networks"]) == ["engagement"]
    for name, spec in compose["services"].items():
        assert spec["networks"] == ["engagement"], name
        if spec.get("ports"):
            assert name in PUBLISHED_OK, f"{name} publishes {spec['ports']} to the host"
    # The web page: on the host's loopback only, behind its token.
    web = compose["services"]["web"]
    assert all(str(p).startswith("127.0.0.1:") for p in web["ports"]), web["ports"]
    assert web["environment"]["WEB_TOKEN"].startswith("${WEB_TOKEN:?")
    for name in ("prometheus", "grafana", "node-exporter", "redis-exporter"):
        assert compose["services"][name]["profiles"] == ["monitoring"], name
    assert compose["services"]["mqtt-bridge"]["profiles"] == ["cloud"]


def test_redis_is_durable_and_password_protected(compose):
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--requirepass" in command
    # Bounded, and never evicting a running session: only keys with a TTL (reported sessions) go.
    assert re.search(r"--maxmemory-policy volatile-(ttl|lru|lfu)\b", command)
    assert "--maxmemory \"$$REDIS_MAXMEMORY\"" in command and redis["environment"]["REDIS_MAXMEMORY"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    for name in ("aggregator", "reporter"):
        url = compose["services"][name]["environment"]["REDIS_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD") and "@redis:6379" in url


def test_only_inference_carries_tensorflow(compose):
    targets = {name: spec["build"]["target"] for name, spec in compose["services"].items() if "build" in spec}
    assert targets.pop("inference") == "inference"
    assert set(targets.values()) == {"edge"}
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    edge_stage = dockerfile.split("FROM base AS edge", 1)[1].split("FROM ", 1)[0]
    assert "[ml]" not in edge_stage and "tensorflow" not in edge_stage.lower()


def test_jetson_override_adds_the_gpu_runtime_and_the_camera():
    jetson = load_yaml(COMPOSE_FILES[1])["services"]
    assert jetson["inference"]["runtime"] == "nvidia"
    assert "/dev/video0:/dev/video0" in jetson["capture"]["devices"]
    base = load_yaml(COMPOSE_FILES[0])["services"]
    assert set(jetson) <= set(base), "the override names a service the base file lacks"
    inference = jetson.pop("inference")
    assert all("l4t" in spec["build"]["args"]["BASE_IMAGE"] for spec in jetson.values())
    # Inference has its own Jetson stage (Python 3.10, ONNX Runtime GPU on JetPack's CUDA/TensorRT),
    # and keeps the TensorRT engines it builds in a volume.
    assert inference["build"] == {"target": "inference-jetson"}
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/l4t-jetpack:r36\.\d+\.\d+ AS inference-jetson$", dockerfile, re.M)
    assert inference["environment"]["TRT_CACHE_DIR"] == "/data/tensorrt"
    assert "tensorrt:/data/tensorrt" in inference["volumes"] and "tensorrt" in load_yaml(COMPOSE_FILES[1])["volumes"]


def test_no_service_writes_into_the_installed_package(compose):
    # Defaults under the source tree (models/, reports/, data/...) would point into
    # site-packages in an image: compose or the Dockerfile must set each of them.
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    for name, spec in compose["services"].items():
        service = name.replace("-", "_")
        if service not in SERVICES:
            continue
        env = spec.get("environment") or {}
        for setting in settings_for(service):
            if str(setting.default).startswith(str(REPO_ROOT)):
                assert setting.env in env or f"{setting.env}=" in dockerfile, f"{name}: {setting.env}"
