"""Secrets that must never run at an empty or example value.

One rule, used in three places: compose's one-shot `check-secrets` service (the stack does not
start until it passes; it checks the secret files, shared/ops/secret_files.py), every service at
start-up (the password in REDIS_URL), and `engagement check`. Each problem is one line that names
the variable or file and never shows its value.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from shared.ops.config import SettingError, value_from_file

# The stack's three secrets (docker-compose.yml mounts them as files: shared/ops/secret_files.py).
COMPOSE_SECRETS = ("REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "WEB_TOKEN")
MAKE_SECRETS = "engagement make-secrets compose/secrets"
MIN_LENGTH = 12
# The web token is the one secret a browser offers to whoever reaches the page's port, and it is
# set once by hand: 16 at least. The passwords keep 12, so a deployment's existing ones still pass.
MIN_LENGTH_BY_NAME = {"WEB_TOKEN": 16}
# Values that appear in examples, tutorials and image defaults: anyone can guess them.
PLACEHOLDERS = frozenset({
    "change-me", "changeme", "change_me", "change-this", "changethis", "replace-me", "replaceme",
    "password", "passw0rd", "password123", "secret", "s3cret", "admin", "administrator", "root",
    "redis", "grafana", "engagement", "example", "default", "test", "guest", "letmein",
    "123456", "12345678", "123456789", "1234567890", "qwerty", "xxx", "xxxxxxxx", "todo", "none", "null",
})
HOW_TO_SET = "set your own (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`)"
# Words found in leaked-password lists and in this product's own names: a secret that is mostly
# these (after 0->o, 1->i, 3->e, 4->a, 5->s, 7->t, @->a, $->s) is guessed long before its length helps.
COMMON_WORDS = frozenset(PLACEHOLDERS | {
    "pass", "passwd", "letmein", "welcome", "login", "master", "monkey", "dragon", "iloveyou", "sunshine",
    "princess", "football", "baseball", "shadow", "superman", "trustno", "abc", "token", "teacher", "student",
    "school", "class", "jetson", "summer", "winter", "hello", "access", "secure", "private", "user",
})
KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop", "azertyuiop", "1234567890")
_LEET = str.maketrans("013457@$", "oieaatas")
# Characters left once the common words, runs (abc, 321, aaa) and keyboard rows are taken out.
MIN_RANDOM_CHARACTERS = 8


def secret_problem(name: str, value: str | None, label: str | None = None, fix: str = HOW_TO_SET) -> str | None:
    """One line saying why `value` must not be used as the secret `name` (called `label` in the line,
    e.g. the file it came from); None when it is fine."""
    label = label or name
    if value is None or not value.strip():
        return f"{label} is empty: {fix}"
    if value.strip().lower() in PLACEHOLDERS or value.strip().lower().startswith("change-me"):
        return f"{label} is an example value anyone can guess: {fix}"
    minimum = MIN_LENGTH_BY_NAME.get(name, MIN_LENGTH)
    if len(value) < minimum:
        return f"{label} has {len(value)} characters, fewer than {minimum}: {fix}"
    if guessable(value):
        return f"{label} is a repeated, sequential or dictionary string anyone can guess: {fix}"
    return None


def guessable(value: str) -> bool:
    """A value that repeats one pattern, uses a handful of characters, or is mostly common words,
    runs (abcd, 4321, aaaa) and keyboard rows: what guessing tools try first, whatever its length."""
    text = value.lower()
    if len(set(text)) < 6 or re.fullmatch(r"(.+?)\1+", text, flags=re.DOTALL):
        return True
    covered = [False] * len(text)

    def cover(start: int, end: int) -> None:
        covered[start:end] = [True] * (end - start)

    plain = text.translate(_LEET)
    for word in COMMON_WORDS:
        if len(word) >= 3:
            for found in re.finditer(re.escape(word), plain):
                cover(found.start(), found.end())
    rows = [*KEYBOARD_ROWS, *(row[::-1] for row in KEYBOARD_ROWS)]
    for start in range(len(text) - 3):
        end = start + 4
        while end <= len(text) and any(text[start:end] in row for row in rows):
            end += 1
        if end > start + 4:
            cover(start, end - 1)
    start = 0
    while start < len(text) - 1:  # runs of one step between neighbours: abc, 4321, zzz
        step = ord(text[start + 1]) - ord(text[start])
        end = start + 1
        while end + 1 < len(text) and ord(text[end + 1]) - ord(text[end]) == step:
            end += 1
        if step in (-1, 0, 1) and end - start >= 2:
            cover(start, end + 1)
        start = end
    return covered.count(False) < MIN_RANDOM_CHARACTERS


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
        from shared.ops.secret_files import folder_problems

        problems += folder_problems(compose_secrets_dir)
    return problems


def main(argv: list[str]) -> int:
    """`engagement check-secrets [--dir DIR | NAME ...]`: compose's start-up gate. With --dir, the
    compose secret files in DIR (compose's service: /run/secrets); else the named variables (default:
    the compose secrets), each given as NAME or NAME_FILE.

    Exit 0 when every secret is a value of our own, 2 otherwise (one line each, never the value)."""
    import os

    usage = "usage: engagement check-secrets [--dir DIR | NAME ...]  (default: " + " ".join(COMPOSE_SECRETS) + ")"
    if argv[:1] == ["--dir"]:
        if len(argv) != 2:
            print(usage, file=sys.stderr)
            return 2
        from shared.ops.secret_files import NAMES, folder_problems

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
