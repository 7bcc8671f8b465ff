"""shared/ops/secret_check.py: the rule against empty and example secrets, compose's
`engagement check-secrets` gate run as a real process, and a service refusing an example
password in REDIS_URL at start-up (one line, exit 3, no traceback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from shared.ops.config import REPO_ROOT
from shared.ops.secret_check import (
    COMPOSE_SECRETS,
    check_problems,
    env_file_leftovers,
    env_problems,
    read_env_file,
    redis_url_problem,
)
from shared.ops.secret_files import make_secret_files
from shared.ops.secret_rule import secret_problem

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


def test_a_secret_left_in_an_old_compose_env_is_named_never_shown(tmp_path):
    # A fresh copy of .env.example holds no secret; an older .env may: compose no longer reads it.
    env = tmp_path / ".env"
    shutil.copy(REPO_ROOT / "compose" / ".env.example", env)
    assert env_file_leftovers(env) == []
    env.write_text(f'REDIS_PASSWORD="{GOOD}"\n# comment\nexport GRAFANA_ADMIN_PASSWORD={GOOD}x\nWEB_TOKEN=\n')
    assert read_env_file(env) == {"REDIS_PASSWORD": GOOD, "GRAFANA_ADMIN_PASSWORD": GOOD + "x", "WEB_TOKEN": ""}
    leftovers = env_file_leftovers(env)
    assert [line.split(" sets ")[1].split(":")[0] for line in leftovers] == ["REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"]
    assert all(line.startswith(str(env)) and GOOD not in line for line in leftovers)


def test_engagement_check_reports_the_environment_and_the_compose_secret_files(tmp_path):
    folder = tmp_path / "secrets"
    assert check_problems({}, folder) == []  # no secret files on this box: nothing to say
    make_secret_files(folder)
    (folder / "web_token").write_text("change-me\n")
    problems = check_problems({"REDIS_URL": "redis://:change-me@127.0.0.1:6379/0"}, folder)
    assert len(problems) == 2 and "REDIS_URL" in problems[0] and problems[1].startswith(f"{folder}/web_token ")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (*COMPOSE_SECRETS, "REDIS_URL")}
    return subprocess.run([sys.executable, "-m", "engagement.cli", *args], env={**clean, **env}, capture_output=True,
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


def test_a_secret_given_as_a_file_is_read_and_checked(tmp_path):
    """NAME_FILE (a compose `secrets:` entry mounted at /run/secrets/...): the settings read the value
    from the file, and the secret checks judge it like the variable itself."""
    from shared.ops.config import SettingError, load_settings

    token = tmp_path / "web_token"
    token.write_text("a-token-of-our-own-1234\n")
    env = {"WEB_TOKEN_FILE": str(token)}
    assert load_settings("web", [], env=env).web_token == "a-token-of-our-own-1234"  # the newline dropped
    assert load_settings("web", [], env={**env, "WEB_TOKEN": "the-variable-wins-1234"}).web_token == \
        "the-variable-wins-1234"
    assert env_problems(env, required=["WEB_TOKEN"]) == []
    token.write_text("change-me\n")
    assert env_problems(env, required=["WEB_TOKEN"]) == [secret_problem("WEB_TOKEN", "change-me")]
    missing = {"WEB_TOKEN_FILE": str(tmp_path / "absent")}
    assert env_problems(missing, required=["WEB_TOKEN"]) == [secret_problem("WEB_TOKEN", "")]
    with pytest.raises(SettingError) as error:
        load_settings("web", [], env=missing)
    assert "WEB_TOKEN_FILE" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("value", ["aaaaaaaaaaaaaaaa", "password12345678", "P@ssw0rd!2024xyz", "abcdefghijklmnop",
                                   "1234567890123456", "qwertyuiopasdfgh", "Summer2024!Summer2024!",
                                   "teacher-token-2024", "abababababababab"])
def test_repeated_sequential_and_dictionary_values_are_refused_whatever_their_length(value):
    problem = secret_problem("WEB_TOKEN", value)
    assert problem and "anyone can guess" in problem and "secrets.token_urlsafe" in problem and value not in problem


def test_a_web_token_needs_16_characters_a_password_keeps_12():
    assert "fewer than 16" in secret_problem("WEB_TOKEN", "f3b9c1d27a8e4b6")
    assert secret_problem("REDIS_PASSWORD", "f3b9c1d27a8e4b6") is None
    assert secret_problem("WEB_TOKEN", "f3b9c1d27a8e4b6c") is None


def test_random_tokens_made_as_the_message_says_pass():
    import secrets

    assert all(secret_problem("WEB_TOKEN", secrets.token_urlsafe(24)) is None for _ in range(2000))
    refused = sum(secret_problem("WEB_TOKEN", secrets.token_hex(8)) is not None for _ in range(2000))
    assert refused <= 10  # 16 random hex digits: a rare one is mostly a run or a word
