"""shared/ops/secret_files.py: `engagement make-secrets` writes the compose stack's secret files
(strong, random, private folder, never overwritten unless --force), and `engagement check-secrets
--dir` (compose's gate, run on /run/secrets) refuses a missing, empty, example or weak one and Redis
files that disagree, one line each, exit 2, never showing a value. Real processes, real files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from shared.ops.config import REPO_ROOT, load_settings
from shared.ops.secret_files import NAMES, REDIS_ADDR, folder_problems, make_secret_files
from shared.ops.secret_rule import secret_problem


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engagement.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)


def values(folder) -> dict[str, str]:
    return {name: (folder / name).read_text() for name in NAMES}


def test_make_secrets_writes_strong_private_files_that_agree(tmp_path):
    folder = tmp_path / "secrets"
    result = cli("make-secrets", str(folder))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
    # Only the owner enters the folder; the files are readable by the containers' users (bind mounts keep
    # the host's owner and mode), which the folder hides from the host's other users.
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((folder / n).stat().st_mode) == 0o644 for n in NAMES)
    got = values(folder)
    password, token, grafana = (got[n].strip() for n in ("redis_password", "web_token", "grafana_admin_password"))
    assert len({password, token, grafana}) == 3
    assert all(len(v) >= 40 and secret_problem("WEB_TOKEN", v) is None for v in (password, token, grafana))
    assert json.loads(got["redis_exporter_passwords"]) == {REDIS_ADDR: password}
    # The services read REDIS_URL from its file (REDIS_URL_FILE), password included.
    url = load_settings("aggregator", [], env={"REDIS_URL_FILE": str(folder / "redis_url")}).redis_url
    assert url == f"redis://:{password}@redis:6379/0"
    assert folder_problems(folder) == []
    for value in (password, token, grafana):
        assert value not in result.stdout + result.stderr  # named, never printed


def test_existing_files_are_kept_unless_forced(tmp_path):
    folder = tmp_path / "secrets"
    make_secret_files(folder)
    first = values(folder)
    assert cli("make-secrets", str(folder)).returncode == 0
    assert values(folder) == first
    (folder / "web_token").unlink()
    make_secret_files(folder)
    second = values(folder)
    assert second["web_token"] != first["web_token"]
    assert {n: v for n, v in second.items() if n != "web_token"} == {n: v for n, v in first.items() if n != "web_token"}
    assert cli("make-secrets", str(folder), "--force").returncode == 0
    third = values(folder)
    assert all(third[n] != second[n] for n in NAMES) and folder_problems(folder) == []


def test_redis_files_are_derived_from_a_password_of_your_own_and_never_left_disagreeing(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "redis_password").write_text("Own-Redis-password-9f3k2m7q\n")
    make_secret_files(folder)
    assert json.loads((folder / "redis_exporter_passwords").read_text()) == {REDIS_ADDR: "Own-Redis-password-9f3k2m7q"}
    assert folder_problems(folder) == []
    # A derived file without the password it came from: refused, nothing written.
    (folder / "redis_password").unlink()
    before = sorted(p.name for p in folder.iterdir())
    result = cli("make-secrets", str(folder))
    assert result.returncode == 2 and "--force" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == before


def test_the_gate_refuses_each_bad_file_in_one_line_and_never_shows_it(tmp_path):
    folder = tmp_path / "secrets"
    make_secret_files(folder)
    result = cli("check-secrets", "--dir", str(folder))
    assert result.returncode == 0 and str(folder) in result.stdout, result.stderr
    (folder / "grafana_admin_password").unlink()  # missing
    (folder / "web_token").write_text("\n")  # empty
    (folder / "redis_password").write_text("change-me\n")  # example (and now unlike the Redis files)
    (folder / "redis_exporter_passwords").write_text("not json\n")
    result = cli("check-secrets", "--dir", str(folder))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and all(line.startswith("refusing to start: ") for line in lines), result.stderr
    by_file = {line.split()[3].removeprefix(f"{folder}/"): line for line in lines}
    assert sorted(by_file) == sorted(NAMES), lines
    assert "is missing" in by_file["grafana_admin_password"] and "make-secrets" in by_file["grafana_admin_password"]
    assert "is empty" in by_file["web_token"]
    assert "example value" in by_file["redis_password"]
    assert "another password than redis_password" in by_file["redis_url"]
    assert "is not JSON" in by_file["redis_exporter_passwords"]
    assert "change-me" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("weak", ["aaaaaaaaaaaaaaaa", "password12345678", "short1"])
def test_a_weak_file_is_refused(tmp_path, weak):
    folder = tmp_path / "secrets"
    make_secret_files(folder)
    (folder / "grafana_admin_password").write_text(weak)
    [problem] = folder_problems(folder)
    assert problem.startswith(f"{folder}/grafana_admin_password ") and weak not in problem


def test_a_redis_password_needing_escapes_is_refused(tmp_path):
    # It goes into a URL and into Redis's config syntax: make-secrets never writes one, a user might.
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "redis_password").write_text('Quote"and@at-9f3k2m7q')
    make_secret_files(folder)
    [problem] = folder_problems(folder)
    assert "would need escaped" in problem and "Quote" not in problem


def test_a_service_refuses_an_example_password_in_its_redis_url_file(tmp_path):
    url = tmp_path / "redis_url"
    url.write_text("redis://:change-me@127.0.0.1:1/0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_URL")}
    result = subprocess.run([sys.executable, "-m", "engagement.cli", "aggregator"], capture_output=True, text=True,
                            env={**env, "REDIS_URL_FILE": str(url), "METRICS_PORT": "0"}, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 3
    assert "the password in REDIS_URL" in result.stderr and "change-me" not in result.stdout + result.stderr


def test_the_by_hand_recipe_of_compose_readme_makes_files_the_gate_accepts(tmp_path):
    # For a box without the project installed: the shell lines compose/README.md gives, run as written.
    readme = (REPO_ROOT / "compose" / "README.md").read_text()
    recipe = readme[readme.index("mkdir -m 700 secrets"):]
    recipe = recipe[:recipe.index("```")]
    result = subprocess.run(["sh", "-c", recipe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert folder_problems(tmp_path / "secrets") == []
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700


def test_a_folder_where_a_file_should_be_is_named(tmp_path):
    # What Docker leaves when a bind mount's file is missing on the host: a folder of that name.
    folder = tmp_path / "secrets"
    make_secret_files(folder)
    (folder / "web_token").unlink()
    (folder / "web_token").mkdir()
    [problem] = folder_problems(folder)
    assert problem.startswith(f"{folder}/web_token is a folder, not a file")
