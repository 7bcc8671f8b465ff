"""`engagement check` / `engagement run` and secrets: an empty or example password in use fails
(one line, exit 2, nothing started), a missing or example compose secret file is a warning, and a
Redis whose eviction policy could drop a running class is a warning. Real redis-servers."""

from __future__ import annotations

import shutil

import pytest

from services.launcher import checks
from shared.ops.config import REPO_ROOT
from shared.ops.secret_check import COMPOSE_SECRETS
from shared.ops.secret_files import make_secret_files
from tests.aggregator.harness import PrivateRedis
from tests.support.run_settings import run_settings_with
from tests.support.runs import engagement, listing, processes_from

GOOD = "4d1f0c9e8b7a6d5c4b3a2f1e"
OURS = [("secrets", checks._secrets), ("eviction", checks._eviction)]


@pytest.fixture
def redis_server(tmp_path_factory):
    def start(password: str = "") -> PrivateRedis:
        folder = tmp_path_factory.mktemp("redis")  # outside the classroom: its processes are checked
        server = PrivateRedis(folder, password=password)
        server.start()
        servers.append(server)
        return server

    servers: list[PrivateRedis] = []
    yield start
    for server in servers:
        server.stop()


def results(values: dict, private: bool = False) -> dict[str, checks.Result]:
    ctx = checks.Context(run_settings_with(**values), private_redis=private)
    return {r.name: r for r in checks.run_checks(ctx, checks=OURS)}


def test_an_example_password_in_use_fails_and_is_not_shown(monkeypatch, tmp_path):
    monkeypatch.setattr(checks, "compose_env_file", lambda: tmp_path / "absent.env")
    for name in COMPOSE_SECRETS:
        monkeypatch.delenv(name, raising=False)
    bad = results({"redis_url": "redis://:change-me@127.0.0.1:1/0"})["secrets"]
    assert not bad.ok and "REDIS_URL" in bad.line() and "fix:" in bad.line() and "change-me" not in bad.line()
    assert results({"redis_url": ""}, private=True)["secrets"].ok
    monkeypatch.setenv("GRAFANA_ADMIN_PASSWORD", "admin")
    assert "GRAFANA_ADMIN_PASSWORD" in results({"redis_url": ""}, private=True)["secrets"].line()


def test_compose_secret_files_missing_or_bad_are_a_warning(monkeypatch, tmp_path):
    # A box set up for compose (a .env) but without its secret files, with a bad one, or with a secret
    # still in .env: a warning (a local run does not read them; compose's check-secrets refuses them).
    env_file = tmp_path / ".env"
    shutil.copy(REPO_ROOT / "compose" / ".env.example", env_file)
    monkeypatch.setattr(checks, "compose_env_file", lambda: env_file)
    for name in COMPOSE_SECRETS:
        monkeypatch.delenv(name, raising=False)
    result = results({"redis_url": ""}, private=True)["secrets"]
    assert result.ok and result.warning and f"{tmp_path}/secrets/redis_password is missing" in result.detail
    make_secret_files(tmp_path / "secrets")
    result = results({"redis_url": ""}, private=True)["secrets"]
    assert result.ok and not result.warning
    (tmp_path / "secrets" / "web_token").write_text("change-me")
    result = results({"redis_url": ""}, private=True)["secrets"]
    assert result.warning and "web_token is an example value" in result.detail and "change-me" not in result.detail
    # SECRETS_DIR of .env names the folder; an old secret line in .env is named, never shown.
    make_secret_files(tmp_path / "elsewhere")
    env_file.write_text(f"SECRETS_DIR=./elsewhere\nWEB_TOKEN={GOOD}w\n")
    result = results({"redis_url": ""}, private=True)["secrets"]
    assert result.warning and "sets WEB_TOKEN: compose no longer reads it" in result.detail
    assert GOOD not in result.detail
    env_file.write_text("SECRETS_DIR=./elsewhere\n")
    assert not results({"redis_url": ""}, private=True)["secrets"].warning


def test_an_eviction_policy_that_could_drop_a_running_class_is_a_warning(redis_server):
    server = redis_server()
    assert "eviction" not in results({"redis_url": ""}, private=True)  # the private Redis evicts nothing
    import redis

    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory-policy", "volatile-ttl")
    assert not results({"redis_url": server.url})["eviction"].warning
    client.config_set("maxmemory-policy", "allkeys-lru")
    result = results({"redis_url": server.url})["eviction"]
    assert result.ok and result.warning and "allkeys-lru" in result.detail


def test_engagement_run_refuses_an_example_password_before_anything_starts(classroom, redis_server):
    server = redis_server(password="change-me")  # Redis accepts it: only the secrets check refuses
    before = listing(classroom)
    check = engagement(classroom, "check", "--source", "class.avi", "--redis-url", server.url)
    rows = {line.split()[0]: line for line in check.out.splitlines()[1:]}
    assert check.code == 2 and " FAIL " in rows["secrets"] and " ok " in rows["redis"], check.out
    run = engagement(classroom, "run", "--source", "class.avi", "--redis-url", server.url, timeout=30)
    assert run.code == 2 and len(run.err_lines) == 1, run.err
    assert run.err_lines[0].startswith("engagement run: secrets: the password in REDIS_URL is an example value")
    assert "change-me" not in run.err + run.out and "Traceback" not in run.err
    assert processes_from(classroom) == [] and listing(classroom) == before
