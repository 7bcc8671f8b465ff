"""Secrets that must never run at an empty or example value.

One rule, used in three places: compose's one-shot `check-secrets` service (the stack does not
start until it passes), every service at start-up (the password in REDIS_URL), and
`engagement check`. Each problem is one line that names the variable and never shows its value.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

# The secrets compose/.env must set (docker-compose.yml reads them as ${VAR:?...}).
COMPOSE_SECRETS = ("REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "WEB_TOKEN")
MIN_LENGTH = 12
# Values that appear in examples, tutorials and image defaults: anyone can guess them.
PLACEHOLDERS = frozenset({
    "change-me", "changeme", "change_me", "change-this", "changethis", "replace-me", "replaceme",
    "password", "passw0rd", "password123", "secret", "s3cret", "admin", "administrator", "root",
    "redis", "grafana", "engagement", "example", "default", "test", "guest", "letmein",
    "123456", "12345678", "123456789", "1234567890", "qwerty", "xxx", "xxxxxxxx", "todo", "none", "null",
})
HOW_TO_SET = "set your own (e.g. `openssl rand -hex 24`)"


def secret_problem(name: str, value: str | None) -> str | None:
    """One line saying why `value` must not be used as the secret `name`; None when it is fine."""
    if value is None or not value.strip():
        return f"{name} is empty: {HOW_TO_SET}"
    if value.strip().lower() in PLACEHOLDERS or value.strip().lower().startswith("change-me"):
        return f"{name} is an example value anyone can guess: {HOW_TO_SET}"
    if len(value) < MIN_LENGTH:
        return f"{name} has {len(value)} characters, fewer than {MIN_LENGTH}: {HOW_TO_SET}"
    return None


def redis_url_problem(url: str, name: str = "REDIS_URL") -> str | None:
    """The password inside a Redis URL; a URL without one (a loopback Redis of a local run) is fine."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # not ours to judge: the Redis client reports a malformed URL itself
    if parts.password is None and "@" not in parts.netloc:
        return None
    return secret_problem(f"the password in {name}", parts.password or "")


def env_problems(env: Mapping[str, str], required: Iterable[str] = ()) -> list[str]:
    """Problems of the `required` secrets (absent counts as empty), of any other known secret that
    is set, and of the password in REDIS_URL."""
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


def env_file_problems(path: Path) -> list[str]:
    """What `engagement check` reports for compose/.env: every compose secret, named with the file."""
    return [f"{path}: {p}" for p in env_problems(read_env_file(path), required=COMPOSE_SECRETS)]


def check_problems(env: Mapping[str, str], compose_env_file: Path | None = None) -> list[str]:
    """What `engagement check` reports about secrets: any example/empty secret or REDIS_URL password
    in the environment, and, when the box has one, the compose/.env that `docker compose up` reads."""
    problems = env_problems(env)
    if compose_env_file is not None and compose_env_file.is_file():
        problems += env_file_problems(compose_env_file)
    return problems


def main(argv: list[str]) -> int:
    """`engagement check-secrets [NAME ...]`: compose's start-up gate (default: the compose secrets).

    Exit 0 when every named secret is set to a value of our own, 2 otherwise (one line each)."""
    import os

    names = argv or list(COMPOSE_SECRETS)
    if any(n.startswith("-") for n in names):
        print("usage: engagement check-secrets [NAME ...]  (default: " + " ".join(COMPOSE_SECRETS) + ")",
              file=sys.stderr)
        return 2
    problems = env_problems(os.environ, required=names)
    for problem in problems:
        print(f"refusing to start: {problem} in compose/.env", file=sys.stderr)
    if problems:
        return 2
    print(f"secrets: {', '.join(names)} set", flush=True)
    return 0
