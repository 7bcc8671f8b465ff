"""Secrets that must never run at an empty or example value.

The rule (shared/ops/secret_rule.py), applied in three places: compose's one-shot `check-secrets`
service (the stack does not start until it passes; it checks the secret files,
shared/ops/secret_files.py), every service at start-up (the password in REDIS_URL), and
`engagement check`. Each problem is one line that names
the variable or file and never shows its value.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from shared.ops.config import SettingError, value_from_file
from shared.ops.secret_files import MAKE_SECRETS, NAMES, folder_problems
from shared.ops.secret_rule import secret_problem

# The stack's three secrets (docker-compose.yml mounts them as files: shared/ops/secret_files.py).
COMPOSE_SECRETS = ("REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "WEB_TOKEN")


def redis_url_problem(url: str, name: str = "REDIS_URL") -> str | None:
    """The password inside a Redis URL; a URL without one (a loopback Redis of a local run) is fine."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # not ours to judge: the Redis client reports a malformed URL itself
    if parts.password is None and "@" not in parts.netloc:
        return None
    return secret_problem(f"the password in {name}", parts.password or "")


def with_secret_files(env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus each known secret given as a file (NAME_FILE, a compose `secrets:` entry); a file
    that cannot be read counts as an empty secret (the check says so, never the value)."""
    out = dict(env)
    for name in (*COMPOSE_SECRETS, "REDIS_URL"):
        if name not in out:
            try:
                value = value_from_file(env, name)
            except SettingError:
                value = ""
            if value is not None:
                out[name] = value
    return out


def env_problems(env: Mapping[str, str], required: Iterable[str] = ()) -> list[str]:
    """Problems of the `required` secrets (absent counts as empty), of any other known secret that
    is set, and of the password in REDIS_URL; each may be given as a file (NAME_FILE)."""
    env = with_secret_files(env)
    required = tuple(required)
    problems = []
    for name in dict.fromkeys([*required, *COMPOSE_SECRETS]):
        if name in required or name in env:
            problem = secret_problem(name, env.get(name))
            if problem:
                problems.append(problem)
    if env.get("REDIS_URL"):
        problem = redis_url_problem(env["REDIS_URL"])
        if problem:
            problems.append(problem)
    return problems


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines of a compose .env file (comments and blank lines skipped, quotes removed)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip().removeprefix("export ").strip()] = value
    return values


def env_file_leftovers(path: Path) -> list[str]:
    """A compose secret still set in compose/.env: compose reads none there any more (the secret
    files of compose/secrets do), so the value is unused but sits in a file that is easy to share."""
    values = read_env_file(path)
    return [f"{path} sets {name}: compose no longer reads it (the stack's secrets are files: `{MAKE_SECRETS}`); "
            f"remove the line" for name in COMPOSE_SECRETS if values.get(name, "").strip()]


def check_problems(env: Mapping[str, str], compose_secrets_dir: Path | None = None) -> list[str]:
    """What `engagement check` reports about secrets: any example/empty secret or REDIS_URL password
    in the environment, and, when the box has one, the compose secret files `docker compose up` mounts."""
    problems = env_problems(env)
    if compose_secrets_dir is not None and compose_secrets_dir.is_dir():
        problems += folder_problems(compose_secrets_dir)
    return problems


def main(argv: list[str]) -> int:
    """`engagement check-secrets [--dir DIR | NAME ...]`: compose's start-up gate. With --dir, the
    compose secret files in DIR (compose's service: /run/secrets); else the named variables (default:
    the compose secrets), each given as NAME or NAME_FILE.

    Exit 0 when every secret is a value of our own, 2 otherwise (one line each, never the value)."""
    usage = "usage: engagement check-secrets [--dir DIR | NAME ...]  (default: " + " ".join(COMPOSE_SECRETS) + ")"
    if argv[:1] == ["--dir"]:
        if len(argv) != 2:
            print(usage, file=sys.stderr)
            return 2
        folder = Path(argv[1])
        problems = folder_problems(folder)
        checked = f"{', '.join(NAMES)} in {folder}"
    else:
        names = argv or list(COMPOSE_SECRETS)
        if any(n.startswith("-") for n in names):
            print(usage, file=sys.stderr)
            return 2
        problems = env_problems(os.environ, required=names)
        checked = ", ".join(names)
    for problem in problems:
        print(f"refusing to start: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"secrets: {checked} set", flush=True)
    return 0
