"""The compose stack's secrets as files: compose's top-level `secrets:` mounts each file of
compose/secrets/ at /run/secrets/<name> in only the services that need it, and each program reads
it there (the project's settings as NAME_FILE, Grafana as GF_..._FILE, Redis on its stdin, the
Redis exporter from its JSON password file). No secret is in an environment variable, so
`docker inspect` and `docker compose config` show none.

Three secrets, five files: the Redis password is written once in each form its readers take
(`make_secret_files` derives them from one value; `folder_problems` checks they agree).
"""

from __future__ import annotations

import json
import os
import re
import secrets as random_source
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from shared.ops.command_parser import CommandParser
from shared.ops.secret_rule import secret_problem

# The command that writes these files: every problem found in them says how to mend it with it.
MAKE_SECRETS = "engagement make-secrets compose/secrets"
# The Redis service's address on the compose network: the exporter's REDIS_ADDR, and the key its
# password file is looked up by (exactly this text).
REDIS_ADDR = "redis://redis:6379"
REDIS_DB = 0
# A Redis password goes into a URL and into Redis's own config syntax: URL-unreserved characters
# need no escaping in either (what `make-secrets` writes).
REDIS_PASSWORD_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]+")


@dataclass(frozen=True)
class SecretFile:
    name: str  # the file's name in the folder, the compose secret's name, /run/secrets/<name>
    holds: str  # the secret it carries (what the checks call it)
    readers: str  # who reads it and how (docs and `make-secrets` output)


SECRET_FILES = (
    SecretFile("redis_password", "REDIS_PASSWORD", "redis (stdin config), its health check, check-secrets"),
    SecretFile("redis_url", "REDIS_URL", "facedetect, inference, aggregator, reporter, web (REDIS_URL_FILE)"),
    SecretFile("redis_exporter_passwords", "REDIS_PASSWORD", "redis-exporter (REDIS_PASSWORD_FILE, JSON)"),
    SecretFile("web_token", "WEB_TOKEN", "web (WEB_TOKEN_FILE)"),
    SecretFile("grafana_admin_password", "GRAFANA_ADMIN_PASSWORD", "grafana (GF_SECURITY_ADMIN_PASSWORD__FILE)"),
)
NAMES = tuple(f.name for f in SECRET_FILES)
_REDIS_DERIVED = ("redis_url", "redis_exporter_passwords")


def redis_url(password: str) -> str:
    return f"redis://:{quote(password, safe='')}@{REDIS_ADDR.removeprefix('redis://')}/{REDIS_DB}"


def exporter_passwords(password: str) -> str:
    return json.dumps({REDIS_ADDR: password}) + "\n"


def strong_value() -> str:
    """32 random bytes, URL-safe; drawn again in the rare case the guessability rule flags it."""
    while True:
        value = random_source.token_urlsafe(32)
        if secret_problem("WEB_TOKEN", value) is None:
            return value


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").removesuffix("\n")
    except (OSError, UnicodeDecodeError):
        return None


def folder_problems(folder: Path) -> list[str]:
    """One line per file of `folder` that is missing, unreadable, empty, an example, weak, or
    disagrees with redis_password; the value itself never appears."""
    problems = []
    values: dict[str, str] = {}
    for f in SECRET_FILES:
        path = folder / f.name
        if not path.exists():
            problems.append(f"{path} is missing: `{MAKE_SECRETS}` makes it")
            continue
        if path.is_dir():  # Docker makes a folder for a bind mount whose file is missing on the host
            problems.append(f"{path} is a folder, not a file: remove it, then `{MAKE_SECRETS}` makes the file")
            continue
        value = _read(path)
        if value is None:
            problems.append(f"{path} cannot be read (a file readable by the containers' users: 0644, "
                            f"in a folder only its owner enters)")
            continue
        values[f.name] = value
        if f.name in _REDIS_DERIVED:
            continue  # judged by its password below
        fix = f"`{MAKE_SECRETS} --force` writes all three again" if f.name == "redis_password" else \
            f"delete it, then `{MAKE_SECRETS}` writes a strong one"
        problem = secret_problem(f.holds, value, label=str(path), fix=fix)
        if problem:
            problems.append(problem)
        elif f.name == "redis_password" and not REDIS_PASSWORD_CHARACTERS.fullmatch(value):
            problems.append(f"{path} has characters a URL or Redis's config would need escaped: use letters, "
                            f"digits, '-', '_', '.' and '~'")
    password = values.get("redis_password")
    if "redis_url" in values:
        problems += _derived_problem(folder / "redis_url", _url_password(values["redis_url"]), password)
    if "redis_exporter_passwords" in values:
        problems += _derived_problem(folder / "redis_exporter_passwords",
                                     _exporter_password(values["redis_exporter_passwords"]), password)
    return problems


def _url_password(text: str) -> str | None:
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return None
    return unquote(parts.password) if parts.scheme in ("redis", "rediss") and parts.password else None


def _exporter_password(text: str) -> str | None:
    try:
        passwords = json.loads(text)
    except ValueError:
        return None
    value = passwords.get(REDIS_ADDR) if isinstance(passwords, dict) else None
    return value if isinstance(value, str) else None


def _derived_problem(path: Path, found: str | None, password: str | None) -> list[str]:
    if found is None:
        form = f"a Redis URL with a password, {redis_url('<password>')}" if path.name == "redis_url" else \
            f"JSON {{\"{REDIS_ADDR}\": \"<password>\"}}"
        return [f"{path} is not {form}: `{MAKE_SECRETS} --force` rewrites it"]
    if password is not None and found != password:
        return [f"{path} holds another password than redis_password: Redis would refuse its readers "
                f"(`{MAKE_SECRETS} --force` makes all three again)"]
    return []


def make_secret_files(folder: Path, force: bool = False) -> list[tuple[Path, str]]:
    """Write each missing file of SECRET_FILES (every one with `force`) with a strong random value:
    (path, "made" | "kept" | "derived from redis_password") for each. The folder is made private
    (0700); the files are 0644, because compose without swarm bind-mounts them with their host
    owner and mode and the containers' users (10001, redis, grafana, nobody) must read them: the
    folder is what keeps them from other users of the host. Raises FileExistsError, changing
    nothing, when a Redis file exists but redis_password does not (they must agree)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    exists = {f.name: (folder / f.name).exists() and not force for f in SECRET_FILES}
    if not exists["redis_password"] and any(exists[n] for n in _REDIS_DERIVED):
        kept = ", ".join(n for n in _REDIS_DERIVED if exists[n])
        raise FileExistsError(f"{folder}: {kept} exists without redis_password; they must hold the same password: "
                              f"`--force` makes all three again")
    password = _read(folder / "redis_password") if exists["redis_password"] else strong_value()
    if password is None:
        raise OSError(f"{folder / 'redis_password'} cannot be read: the Redis files are derived from it")
    contents = {"redis_password": password, "redis_url": redis_url(password),
                "redis_exporter_passwords": exporter_passwords(password),
                "web_token": strong_value(), "grafana_admin_password": strong_value()}
    done = []
    for f in SECRET_FILES:
        path = folder / f.name
        if exists[f.name]:
            done.append((path, "kept (--force replaces it)"))
            continue
        _write_private(path, contents[f.name])
        derived = f.name in _REDIS_DERIVED and exists["redis_password"]
        done.append((path, "derived from redis_password" if derived else "made"))
    return done


def _write_private(path: Path, text: str) -> None:
    """Atomically, so a reader never sees half a secret; 0644 for the reasons above."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text if text.endswith("\n") else text + "\n")
    tmp.chmod(0o644)  # whatever the umask took off
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    """`engagement make-secrets DIR [--force]`: the compose stack's secret files."""

    parser = CommandParser(
        prog="engagement make-secrets",
        description="Write the compose stack's secret files (compose `secrets:`) with strong random values. "
                    "Existing files are kept unless --force.")
    parser.add_argument("directory", type=Path, help="the folder compose reads them from (compose/secrets, "
                                                     "or SECRETS_DIR of compose/.env)")
    parser.add_argument("--force", action="store_true", help="replace existing files (the running stack must be "
                                                             "recreated: `docker compose up -d --force-recreate`)")
    args = parser.parse_args(argv)
    try:
        done = make_secret_files(args.directory, force=args.force)
    except (FileExistsError, OSError) as exc:
        print(f"make-secrets: {exc}", file=sys.stderr)
        return 2
    for path, what in done:
        print(f"{path}: {what}")
    print(f"{args.directory} is 0700 (only its owner enters); never commit it")
    return 0
