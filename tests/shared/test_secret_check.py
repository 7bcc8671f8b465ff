"""shared/secret_check.py: the rule against empty and example secrets, compose's
`engagement check-secrets` gate run as a real process, and a service refusing an example
password in REDIS_URL at start-up (one line, exit 3, no traceback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from shared.config import REPO_ROOT
from shared.secret_check import (
    COMPOSE_SECRETS,
    check_problems,
    env_file_problems,
    env_problems,
    read_env_file,
    redis_url_problem,
    secret_problem,
)

GOOD = "f3b9c1d27a8e4b6c9d0e1f2a"


@pytest.mark.parametrize("value", [None, "", "   ", "change-me", "CHANGE-ME", "changeme", "password", "admin",
                                   "change-me-please", "short1"])
def test_empty_example_and_short_values_are_refused_by_name(value):
    problem = secret_problem("REDIS_PASSWORD", value)
    assert problem and problem.startswith("REDIS_PASSWORD ")
    if value and value.strip():
        assert value not in problem  # never echo the secret


def test_a_value_of_our_own_is_accepted():
    assert secret_problem("REDIS_PASSWORD", GOOD) is None
    assert secret_problem("X", "correct horse battery") is None


def test_redis_url_password():
    assert redis_url_problem("redis://127.0.0.1:6379/0") is None  # a local run's loopback Redis
    assert redis_url_problem(f"redis://:{GOOD}@redis:6379/0") is None
    assert "REDIS_URL" in redis_url_problem("redis://:change-me@redis:6379/0")
    assert "empty" in redis_url_problem("redis://:@redis:6379/0")
    assert "change-me" not in redis_url_problem("redis://:change-me@redis:6379/0")


def test_required_names_absent_count_as_empty_others_only_when_set():
    assert env_problems({}) == []
    assert env_problems({}, required=["REDIS_PASSWORD"]) == [secret_problem("REDIS_PASSWORD", None)]
    problems = env_problems({"GRAFANA_ADMIN_PASSWORD": "admin", "REDIS_URL": "redis://:password@r:6379/0"})
    assert len(problems) == 2 and problems[0].startswith("GRAFANA_ADMIN_PASSWORD") and "REDIS_URL" in problems[1]


def test_a_fresh_copy_of_env_example_is_reported(tmp_path):
    # What a user gets from `cp .env.example .env`: both secrets reported, the file named.
    env = tmp_path / ".env"
    shutil.copy(REPO_ROOT / "compose" / ".env.example", env)
    problems = env_file_problems(env)
    assert [p.split(": ", 1)[1].split(" ")[0] for p in problems] == ["REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
                                                                     "WEB_TOKEN"]
    assert all(p.startswith(str(env)) for p in problems)
    env.write_text(f'REDIS_PASSWORD="{GOOD}"\n# comment\nexport GRAFANA_ADMIN_PASSWORD={GOOD}x\nWEB_TOKEN={GOOD}y\n')
    assert read_env_file(env) == {"REDIS_PASSWORD": GOOD, "GRAFANA_ADMIN_PASSWORD": GOOD + "x", "WEB_TOKEN": GOOD + "y"}
    assert env_file_problems(env) == []


def test_engagement_check_reports_the_environment_and_the_compose_env_file(tmp_path):
    env_file = tmp_path / ".env"
    assert check_problems({}, env_file) == []  # no compose/.env on this box: nothing to say
    shutil.copy(REPO_ROOT / "compose" / ".env.example", env_file)
    problems = check_problems({"REDIS_URL": "redis://:change-me@127.0.0.1:6379/0"}, env_file)
    assert len(problems) == 4 and "REDIS_URL" in problems[0] and all(str(env_file) in p for p in problems[1:])


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (*COMPOSE_SECRETS, "REDIS_URL")}
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60, cwd=REPO_ROOT)


def test_compose_gate_refuses_an_example_value_in_one_line():
    result = run_cli("check-secrets", REDIS_PASSWORD="change-me", GRAFANA_ADMIN_PASSWORD=GOOD, WEB_TOKEN=GOOD + "w")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "REDIS_PASSWORD" in lines[0] and lines[0].startswith("refusing to start:")
    assert "change-me" not in result.stderr and "Traceback" not in result.stderr
    result = run_cli("check-secrets", REDIS_PASSWORD=GOOD, WEB_TOKEN=GOOD + "w")  # GRAFANA_ADMIN_PASSWORD unset
    assert result.returncode == 2 and "GRAFANA_ADMIN_PASSWORD is empty" in result.stderr


def test_compose_gate_passes_with_secrets_of_our_own():
    result = run_cli("check-secrets", REDIS_PASSWORD=GOOD, GRAFANA_ADMIN_PASSWORD=GOOD[::-1], WEB_TOKEN=GOOD + "w")
    assert result.returncode == 0, result.stderr
    assert "REDIS_PASSWORD, GRAFANA_ADMIN_PASSWORD, WEB_TOKEN" in result.stdout


def test_a_service_refuses_an_example_password_in_redis_url_at_start_up():
    # Refused before anything connects or binds: port 1 is never reached.
    result = run_cli("aggregator", REDIS_URL="redis://:change-me@127.0.0.1:1/0", METRICS_PORT="0")
    assert result.returncode == 3
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "refusing to start" in line]
    assert len(errors) == 1 and "the password in REDIS_URL" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "change-me" not in result.stdout + result.stderr
