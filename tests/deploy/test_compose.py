"""compose/: the compose files against the Compose Specification schema, every variable in
.env.example, settings names and links consistent with shared/ops/config.py, and the rules of
the deployment (non-root images, health-ordered start, only monitoring published).

A Docker engine cannot run on these machines, so nothing here starts a container: the files
are checked statically (schema + the project's own contracts)."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from engagement.cli import SERVICE_CLASSES
from shared.bus.links import LINKS
from shared.ops.config import METRICS_PORTS, REPO_ROOT, SERVICES, env_names, settings_for
from tests.deploy.tools import COMPOSE_DIR, COMPOSE_FILES, env_example, interpolated_names, load_yaml

PIPELINE = ["capture", "facedetect", "sequencer", "inference", "aggregator", "reporter"]
PUBLISHED_OK = {"grafana", "prometheus", "web"}  # what a user must reach from the host
# Read by OpenCV's window (X11) and by glibc's resolver (compose's short DNS timeouts), not by shared/ops/config.py.
NOT_PROJECT_SETTINGS = {"DISPLAY", "RES_OPTIONS"}


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
        for written in set(env) - NOT_PROJECT_SETTINGS:
            var = written
            if var.endswith("_FILE") and var.removesuffix("_FILE") in own:
                var = var.removesuffix("_FILE")  # the setting's value read from a secret file (Docker's NAME_FILE)
            assert var in known, f"{name}: {var} is not a setting of the project (shared/ops/config.py)"
            assert var in own, f"{name}: {var} is not a setting of the {project_service} service"
            assert re.search(rf"\b{written}\b", text), f"{written} (set for {name}) is not documented in .env.example"


def test_metrics_ports_and_health_checks(compose):
    for service in [*PIPELINE, "mqtt_bridge", "web"]:
        spec = compose["services"][compose_service_name(service)]
        assert spec["environment"]["METRICS_PORT"] == str(METRICS_PORTS[service])
        assert spec["environment"]["METRICS_HOST"] == "0.0.0.0"
        assert "/healthz" in " ".join(spec["healthcheck"]["test"])
        assert spec["restart"] == "unless-stopped"
        assert spec["command"] == [service]


def test_links_bind_on_the_producer_and_connect_to_it(compose):
    # Every link of the one link table (shared/bus/links.py), and no other: same socket types and
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
            if dep in ("check-secrets", "bus-keys"):  # the one-shots: they must have exited 0
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
    assert web["environment"]["WEB_TOKEN_FILE"] == "/run/secrets/web_token" and "web_token" in web["secrets"]
    for name in ("prometheus", "grafana", "node-exporter", "redis-exporter"):
        assert compose["services"][name]["profiles"] == ["monitoring"], name
    assert compose["services"]["mqtt-bridge"]["profiles"] == ["cloud"]


def test_redis_is_durable_and_password_protected(compose):
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    # The password: config on stdin from the secret file (tests/deploy/test_compose_secrets.py runs it).
    assert "--appendonly yes" in command and 'requirepass "$$(cat /run/secrets/redis_password)"' in command
    assert redis["secrets"] == ["redis_password"]
    assert "/run/secrets/redis_password" in " ".join(redis["healthcheck"]["test"])
    # Bounded, and never evicting a running session: only keys with a TTL (reported sessions) go.
    assert re.search(r"--maxmemory-policy volatile-(ttl|lru|lfu)\b", command)
    assert "--maxmemory \"$$REDIS_MAXMEMORY\"" in command and redis["environment"]["REDIS_MAXMEMORY"]
    assert any(v.endswith(":/data") for v in redis["volumes"])
    for name in ("facedetect", "inference", "aggregator", "reporter", "web"):
        spec = compose["services"][name]
        assert spec["environment"]["REDIS_URL_FILE"] == "/run/secrets/redis_url" and "redis_url" in spec["secrets"]
        assert "REDIS_URL" not in spec["environment"], name


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
    # Only inference builds on NVIDIA's base: every other service keeps the one edge image of the base
    # file (built once for amd64 and arm64), none builds the same tag from another base.
    assert not any("build" in spec or "image" in spec for spec in jetson.values())
    assert inference["healthcheck"] == {"start_period": "20m"}  # a TensorRT engine's first build
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


def test_every_bus_service_authenticates_with_the_pair_bus_keys_makes_once(compose, tmp_path):
    # Issue 22: on the compose network any container could connect a PULL to a link; now every
    # service that opens a link presents the one pair the one-shot bus-keys made at the first start.
    services = compose["services"]
    keys = services["bus-keys"]
    assert keys["command"][:2] == ["make-curve-keys", "/data/bus-keys"] and "--if-missing" in keys["command"]
    assert keys["restart"] == "no" and keys["volumes"] == ["bus-keys:/data/bus-keys"]
    on_the_bus = [name for name, spec in services.items()
                  if any(var.endswith(("_OUT", "_IN")) for var in spec.get("environment") or {})]
    assert set(PIPELINE) | {"web"} <= set(on_the_bus)
    for name in on_the_bus:
        spec = services[name]
        assert spec["environment"]["CURVE_SERVER_KEY"] == "/data/bus-keys/bus.key_secret", name
        assert "bus-keys:/data/bus-keys:ro" in spec["volumes"], name
    # The real command, as the container runs it at every start: made once, then kept.
    from engagement.cli import main

    folder = tmp_path / "bus-keys"
    assert main(["make-curve-keys", str(folder), "--if-missing"]) == 0
    first = (folder / "bus.key_secret").read_bytes()
    assert main(["make-curve-keys", str(folder), "--if-missing"]) == 0
    assert (folder / "bus.key_secret").read_bytes() == first and b"secret-key" in first


def test_secrets_are_files_and_each_service_mounts_only_those_it_reads(compose):
    # Issue 23: compose `secrets:` (file sources: podman-compose mounts no other kind at run time),
    # one per file `engagement make-secrets` writes, in SECRETS_DIR; a service mounts a secret only
    # when its environment, command or health check reads it at /run/secrets/<name>, and reads none
    # it does not mount. check-secrets mounts them all and checks the folder.
    from shared.ops.secret_files import NAMES

    assert compose["secrets"] == {name: {"file": f"${{SECRETS_DIR:-./secrets}}/{name}"} for name in NAMES}
    for service, spec in compose["services"].items():
        mounted = set(spec.get("secrets") or [])
        assert mounted <= set(NAMES), service
        text = json.dumps([spec.get("environment"), spec.get("command"), spec.get("healthcheck")])
        read = set(re.findall(r"/run/secrets/([a-z_]+)", text))
        if service == "check-secrets":
            assert spec["command"][-2:] == ["--dir", "/run/secrets"] and mounted == set(NAMES)
            continue
        assert read == mounted, f"{service} mounts {sorted(mounted)} and reads {sorted(read)}"
    readers = {name: sorted(s for s, spec in compose["services"].items() if name in (spec.get("secrets") or []))
               for name in NAMES}
    assert readers == {
        "redis_password": ["check-secrets", "redis"],
        "redis_url": ["aggregator", "check-secrets", "facedetect", "inference", "reporter", "web"],
        "redis_exporter_passwords": ["check-secrets", "redis-exporter"],
        "web_token": ["check-secrets", "web"],
        "grafana_admin_password": ["check-secrets", "grafana"],
    }
