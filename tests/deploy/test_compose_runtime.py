"""The parts of compose/ that run without a Docker engine, run for real on this machine:
the services' health check command against the project's own /healthz server, Redis started
with compose's own command line (append-only, password) and reached through compose's
REDIS_URL, Mosquitto with compose's config and health check, and the project built as a wheel
from exactly what the Dockerfile copies into the image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import redis

from shared.bus import metrics
from shared.ops.config import load_settings
from shared.ops.secret_files import make_secret_files
from tests.deploy.prometheus_server import free_port
from tests.deploy.tools import COMPOSE_DIR, COMPOSE_FILES, load_yaml
from tests.support.waiting import wait_for

COMPOSE = load_yaml(COMPOSE_FILES[0])


def healthcheck_command(service: str) -> list[str]:
    test = COMPOSE["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return test[1:]


def test_service_health_check_follows_the_services_state():
    state = {"healthy": True}
    port = free_port()
    server = metrics.serve("127.0.0.1", port, lambda: state["healthy"])
    try:
        command = [sys.executable if c == "python" else c for c in healthcheck_command("inference")]
        env = {**os.environ, "METRICS_PORT": str(port)}
        assert subprocess.run(command, env=env, capture_output=True).returncode == 0
        state["healthy"] = False  # /healthz answers 503: the check must fail
        assert subprocess.run(command, env=env, capture_output=True).returncode != 0
    finally:
        server.shutdown()
    assert subprocess.run(command, env={**os.environ, "METRICS_PORT": str(port)}, capture_output=True).returncode != 0


def test_healthz_tells_loading_from_failed():
    """A 503 says which: "starting" (inference loading its model: compose waits, start_period) or
    "failed"; 200 "running"."""
    import urllib.error
    import urllib.request

    state = {"now": "starting"}
    port = free_port()
    server = metrics.serve("127.0.0.1", port, lambda: state["now"] in ("running", "stopping"), lambda: state["now"])
    try:
        for now, code in (("starting", 503), ("running", 200), ("failed", 503)):
            state["now"] = now
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                    got = response.status, response.read()
            except urllib.error.HTTPError as exc:
                got = exc.code, exc.read()
            assert got == (code, f"{now}\n".encode())
    finally:
        server.shutdown()
    # Inference waits longer than the others before a failed check counts (loading a model).
    services = COMPOSE["services"]
    assert services["inference"]["healthcheck"]["start_period"] == "5m"
    assert services["inference"]["healthcheck"]["test"] == services["capture"]["healthcheck"]["test"]


def in_the_container(text: str, secrets: Path) -> str:
    """A compose command as the container's shell gets it: `$$` is `$`, the secret files are ours."""
    return text.replace("$$", "$").replace("/run/secrets/", f"{secrets}/")


@pytest.fixture
def compose_redis(tmp_path):
    """redis-server started by compose's own `command`, on a free loopback port, with the password of
    the secret files `engagement make-secrets` writes (mounted at /run/secrets in the container)."""
    spec = COMPOSE["services"]["redis"]
    secrets = tmp_path / "secrets"
    make_secret_files(secrets)
    data = tmp_path / "data"
    data.mkdir()
    shell, flag, script = spec["command"]
    port = free_port()
    assert "redis-server - " in script  # the config on stdin first: our options go after it
    script = in_the_container(script, secrets).replace(
        "redis-server - ", f"redis-server - --port {port} --bind 127.0.0.1 --dir {data} --save '' ")
    env = {**os.environ, "REDIS_MAXMEMORY": spec["environment"]["REDIS_MAXMEMORY"]}
    proc = subprocess.Popen([shell, flag, script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The health check as compose runs it, the password from the same file (redis-cli's options go
    # before its command).
    shell, flag, test = spec["healthcheck"]["test"][1:]
    assert test.endswith("exec redis-cli ping")
    check = [shell, flag, in_the_container(test, secrets).replace("redis-cli ping", f"redis-cli -p {port} ping")]
    try:
        wait_for(lambda: subprocess.run(check, capture_output=True, text=True).stdout.strip() == "PONG",
                 "redis-cli PONG", timeout=30)
        yield port, secrets, data
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_runs_append_only_with_the_password_and_the_services_url_works(compose_redis):
    port, secrets, data_dir = compose_redis
    # What the services read (REDIS_URL_FILE), pointed at this Redis instead of the `redis` service.
    assert COMPOSE["services"]["aggregator"]["environment"]["REDIS_URL_FILE"] == "/run/secrets/redis_url"
    settings = load_settings("aggregator", [], env={"REDIS_URL_FILE": str(secrets / "redis_url")})
    assert settings.redis_url.endswith("@redis:6379/0")
    client = redis.Redis.from_url(settings.redis_url.replace("@redis:6379", f"@127.0.0.1:{port}"))
    # The password is on neither Redis's command line nor in its environment (ps, /proc).
    password = (secrets / "redis_password").read_text().strip()
    server = Path(f"/proc/{client.info('server')['process_id']}")
    assert password.encode() not in (server / "cmdline").read_bytes() + (server / "environ").read_bytes()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    # Bounded, evicting only keys with a TTL (reported sessions; shared/data/redis_retention.py).
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "volatile-ttl"}
    assert client.config_get("maxmemory") == {"maxmemory": str(512 * 2**20)}
    client.set("engagement:deploy-test", "1")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).set("x", "1")
    wait_for(lambda: any(p.name.startswith("appendonly") for p in data_dir.iterdir()), "the AOF", timeout=30)


def test_mosquitto_runs_with_the_compose_config_and_its_health_check_passes(tmp_path):
    port = free_port()
    conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/")
    assert f"listener {port}" in conf and str(tmp_path) in conf
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        check = [*healthcheck_command("mosquitto"), "-p", str(port)]
        wait_for(lambda: subprocess.run(check, capture_output=True).returncode == 0, "the health check", timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_image_build_context_is_enough_to_build_the_project(tmp_path):
    # What `COPY` puts into the image (and .dockerignore lets through) must build the package,
    # with both console scripts, as `pip install .` does in the Dockerfile.
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    # COPY --from=<stage> copies inside the build, not from the context.
    copies = re.findall(r"^COPY (?!--from=)(.+)$", dockerfile, re.MULTILINE)
    sources = [src for line in copies for src in line.split()[:-1]]
    allowed = re.findall(r"^!(\S+?)/?$", (COMPOSE_DIR / "Dockerfile.dockerignore").read_text(), re.MULTILINE)
    assert sorted(sources) == sorted(allowed)
    context = tmp_path / "context"
    for src in sources:
        origin = COMPOSE_DIR.parent / src
        if origin.is_dir():
            shutil.copytree(origin, context / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (context / src).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin, context / src)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                             "-w", str(tmp_path / "dist"), str(context)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "engagement = engagement.cli:main" in entry_points and "engagement-train = training.cli:main" in entry_points
    for module in ("engagement/cli.py", "services/inference/service.py", "training/docker_run.py"):
        assert module in names
