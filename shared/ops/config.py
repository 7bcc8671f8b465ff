"""Every setting of every service: how a value is found and checked.

Each setting is declared once, as a field of its service's msgspec Struct in
shared/ops/settings.py: its name, type, default, help, choices and bounds. The table here (COMMON,
SERVICES, LAUNCHER: one `Setting` a row) is read from those Structs, for the flags, the
environment, the config file, validation and `engagement config --example`.

A setting comes from, highest first: its CLI flag (`SESSION_ID` <-> `--session-id`), its
environment variable, a YAML config file (`--config FILE` or `CONFIG_FILE`; keys are the
lower-case names, `engagement config --example` prints one with every setting), its
default. compose/, k8s/ and the local launcher set the same variable names, so a value
means the same thing wherever it is set. Every value is checked against its type, choices
and bounds; a bad one stops the program with one line naming the setting, where the value
came from and what is allowed (`SettingError`).

Bus links are connection strings `<socket type>+<bind|connect>:<endpoint>` (one per side
of a link), so the pattern and which side binds are configuration, not code. The links,
their patterns, default ports and why are in one table, shared/bus/links.py; the link settings
are derived from it (shared/ops/settings.py: `_link_out`, `_link_in`).

The resolved values are typed objects, one msgspec Struct per service and one for `engagement
run` (shared/ops/settings.py): attribute access with real static types, built once by
`load_settings` (or the launcher's `resolve_run`) and passed down. msgspec rather than
pydantic-settings: it is already the bus's message library (one validation library, not two),
its Structs are plain typed classes a type checker reads as such, and the sources, precedence and
one-line errors below stay this module's own, exactly as before (pydantic-settings would bring its
own precedence rules and error texts, which scripts and tests read).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import typing
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from shared.bus.links import SPEC_FORM, spec_problem
from shared.ops.command_parser import CommandParser
from shared.ops.settings import (
    BY_SERVICE,
    CommonSettings,
    DetectorName,
    LauncherSettings,
    Settings,
)
from shared.ops.settings import REPO_ROOT as REPO_ROOT  # the checkout; read from here by many

# Kept here, not imported from shared/vision/detectors (which imports OpenCV), so settings stay light.
DETECTOR_NAMES: tuple[str, ...] = typing.get_args(DetectorName)


@dataclass(frozen=True)
class Setting:
    env: str
    default: Any
    help: str
    type: type = str
    choices: tuple[str, ...] | None = None
    min: float | None = None  # lowest allowed value (numbers)
    max: float | None = None
    form: str = ""  # the form its text must have: a key of FORMS

    @property
    def switch(self) -> bool:
        """An on/off setting (`1 = ...`): its flag given alone means 1."""
        return self.type is int and self.help.startswith("1 = ")

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")

    @property
    def dest(self) -> str:
        return self.env.lower()


# Each service serves Prometheus metrics (and /healthz) on its own port.
METRICS_PORTS: dict[str, int] = {
    "capture": 9101,
    "facedetect": 9102,
    "sequencer": 9103,
    "inference": 9104,
    "aggregator": 9105,
    "reporter": 9106,
    "mqtt_bridge": 9107,
    "web": 9108,
}

# CPU budget per service (shared/ops/cpu_budget.py): threads each library may use in that
# service's process, so the stages overlap instead of each sizing its pools to every core.
# A budget setting left at 0 takes the service's value here; absent here = the library's own
# default (every core). From `engagement bench --budget-sweep` (bench/RESULTS.md).
CPU_BUDGETS: dict[str, dict[str, int]] = {
    "capture": {"CV_THREADS": 1},
    "facedetect": {"CV_THREADS": 1, "LITERT_THREADS": 1},
    "sequencer": {"CV_THREADS": 1},
    # The model call takes both cores of a 2-core box (ONNX Runtime and LiteRT: 2 threads there).
    "inference": {"CV_THREADS": 1, "LITERT_THREADS": 2, "ORT_THREADS": 2, "TF_INTRA_OP_THREADS": 1,
                  "TF_INTER_OP_THREADS": 1},
    "aggregator": {"CV_THREADS": 1},
    "reporter": {"CV_THREADS": 1},
}
# Seconds a light service lets its input gather after handling a run of it (shared/ops/service.py, the
# GATHER_SECONDS setting overrides): at 76 webcams 150 updates and predictions a second woke each of these
# for every one. The stages a frame's delay is measured through (capture to inference) wake for each.
# The aggregator's run is one Redis round trip; the reporter's and the web's are the live page's, whose
# updates come up to this much later.
GATHER_SECONDS: dict[str, float] = {"aggregator": 0.05, "reporter": 0.04, "web": 0.04}
# The attention baseline runs the face mesh of a frame's faces over as many one-thread workers as
# inference's LITERT_THREADS (services/inference/baseline/mesh_pool.py); a frame of fewer faces than
# this stays on one thread, where handing faces to a worker costs more than it saves.
MESH_POOL_MIN_FACES = 4
# The live page's video is drawn and encoded only while a page watches it (shared/data/live_watch.py):
# the web keeps its keys for LIVE_WATCH_TTL seconds and refreshes them every LIVE_WATCH_REFRESH (and at
# once when a page opens one); the reporter reads them at most every LIVE_WATCH_READ seconds a session,
# so a page's video starts within about LIVE_WATCH_READ plus a frame (plus the reporter's half-second tick
# when no page watched before: it had told the captures to send no preview), and stops about LIVE_WATCH_TTL
# after the last page closed. A read that failed is tried again after LIVE_WATCH_RETRY (drawing
# meanwhile: a Redis that hangs costs its timeout that often, not every second).
LIVE_WATCH_TTL = 4.0
LIVE_WATCH_REFRESH = 1.0
LIVE_WATCH_READ = 1.0
LIVE_WATCH_RETRY = 5.0
# A page that opens the video starts on the last frame only if it is this fresh (seconds); else on the next.
LIVE_VIDEO_LATEST_MAX_AGE = 2.0
# With a trained model on a machine of at most SMALL_BOX_CPUS cores, `engagement run` pins the
# light stages to CPU 0 (CPU_AFFINITY, unless set) and lets inference use both, so the model
# call does not wait behind them: the sweep's winner for bundles on 2 cores (8 faces: 20.4 vs
# 17.1 frames/s, means of 3 passes; 2 FPS p99 127 vs 247 ms, medians). Not for the baseline, whose
# face mesh is light and whose detection needs a core of its own (85 vs 129 frames/s pinned),
# nor on bigger machines (not measured). bench/RESULTS.md has the sweep.
SMALL_BOX_CPUS = 2
SMALL_BOX_AFFINITY: dict[str, str] = dict.fromkeys(("capture", "facedetect", "sequencer", "aggregator", "reporter"),
                                                   "0")
def _setting(name: str, annotation: Any) -> Setting:
    """The table's row of a Struct field: its type and the facts `about` put in its annotation."""
    base, *extras = typing.get_args(annotation)
    facts = next(extra for extra in extras if isinstance(extra, msgspec.Meta))
    choices = typing.get_args(base) if typing.get_origin(base) is typing.Literal else None
    extra = facts.extra or {}
    return Setting(name.upper(), extra["default"], facts.description or "", str if choices else base,
                   choices, facts.ge, facts.le, str(extra.get("form") or ""))


def _table(cls: type[msgspec.Struct], skip: Set[str] = frozenset()) -> list[Setting]:
    """The settings a Struct of shared/ops/settings.py declares, in its order, but those in `skip`."""
    return [_setting(f.name, f.type) for f in msgspec.structs.fields(cls) if f.name not in skip]


# The table, read from the Structs of shared/ops/settings.py (the one place of each setting's name, type,
# default, help, choices and bounds): the settings every service takes, each service's own, the launcher's.
COMMON: list[Setting] = _table(CommonSettings)
_NOT_OWN = {*CommonSettings.__struct_fields__, "metrics_port"}
SERVICES: dict[str, list[Setting]] = {name: _table(cls, _NOT_OWN) for name, cls in BY_SERVICE.items()}
LAUNCHER: list[Setting] = _table(LauncherSettings)


def _named(name: str) -> Setting:
    """A service's setting by its name (the first service that takes it)."""
    return next(s for group in SERVICES.values() for s in group if s.env == name)


# How facedetect crops faces; `engagement-train faces` takes them as its defaults (training/faces.py).
DETECTOR, CROP_SIZE, CROP_MARGIN = map(_named, ("DETECTOR", "CROP_SIZE", "CROP_MARGIN"))
JOURNAL_DIR, REPORT_FALLBACK_DIR = map(_named, ("JOURNAL_DIR", "REPORT_FALLBACK_DIR"))
# The two settings of each link of shared/bus/links.py.
FRAMES_OUT, FRAMES_IN, PREVIEW_OUT, PREVIEW_IN = map(_named, ("FRAMES_OUT", "FRAMES_IN", "PREVIEW_OUT", "PREVIEW_IN"))
FACES_OUT, FACES_IN, BATCHES_OUT, BATCHES_IN = map(_named, ("FACES_OUT", "FACES_IN", "BATCHES_OUT", "BATCHES_IN"))
PREDICTIONS_OUT, PREDICTIONS_IN = map(_named, ("PREDICTIONS_OUT", "PREDICTIONS_IN"))
UPDATES_OUT, UPDATES_IN, ACKS_OUT, ACKS_IN = map(_named, ("UPDATES_OUT", "UPDATES_IN", "ACKS_OUT", "ACKS_IN"))
LIVE_OUT, LIVE_IN = map(_named, ("LIVE_OUT", "LIVE_IN"))


class SettingError(ValueError):
    """A bad setting value or config file; str(exc) is the one line a user sees."""


def settings_for(service: str) -> list[Setting]:
    if service == "launcher":
        return LAUNCHER
    return COMMON + SERVICES.get(service, [])


def all_settings() -> list[Setting]:
    """Every setting once (a name shared by services, like REDIS_URL, at its first place)."""
    seen: dict[str, Setting] = {}
    for s in [*COMMON, *(s for group in SERVICES.values() for s in group), *LAUNCHER]:
        seen.setdefault(s.env, s)
    return list(seen.values())


_BOOL_WORDS = {"true": 1, "yes": 1, "on": 1, "false": 0, "no": 0, "off": 0}


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")  # what redis-py takes: another was its traceback


def redis_url_problem(text: str) -> str | None:
    """What is wrong with a Redis URL, or None."""
    return None if text.startswith(REDIS_SCHEMES) else "is not a Redis URL"


# The forms a text setting may be held to (settings.py `about(form=...)`): its check, and its words.
FORMS: dict[str, tuple[Callable[[str], str | None], str]] = {
    "socket": (spec_problem, SPEC_FORM + ", endpoints comma-separated"),
    "redis_url": (redis_url_problem, "a URL starting " + ", ".join(REDIS_SCHEMES)),
}


def allowed(setting: Setting) -> str:
    """What a setting accepts, in words (for errors and the example file)."""
    if setting.choices:
        return "one of " + ", ".join(setting.choices)
    if setting.switch:
        return "0 or 1 (or true/false, yes/no, on/off)"
    if setting.form:
        return FORMS[setting.form][1]
    if setting.type in (int, float):
        kind = "a whole number" if setting.type is int else "a number"
        if setting.min is not None and setting.max is not None:
            return f"{kind} from {setting.min:g} to {setting.max:g}"
        if setting.min is not None:
            return f"{kind} of at least {setting.min:g}"
        return kind
    return "text"


def parse_value(setting: Setting, raw: Any, origin: str) -> Any:
    """`raw` (text from a flag or the environment, or a YAML scalar) as the setting's type."""
    def bad(why: str) -> SettingError:
        # A URL's password (often from a secret file) is never written into the line.
        secret = setting.form == "redis_url" and isinstance(raw, str)
        shown = re.sub(r"^([^:]*:/*).*@", r"\1***@", raw) if secret else raw  # to the last @: a password may hold one
        return SettingError(f"setting {setting.env}={shown!r} ({origin}) {why}; allowed: {allowed(setting)}, "
                            f"default {setting.default!r}")

    if isinstance(raw, dict | list):
        raise bad("is not a single value")
    text = "" if raw is None else ("1" if raw is True else "0" if raw is False else str(raw)).strip()
    if setting.type is str:
        value: Any = "" if raw is None else str(raw)
        problem = FORMS[setting.form][0](value) if setting.form and value else None
        if problem:  # "" = off or the launcher's own (where that is allowed, the service says so)
            raise bad(problem)
    elif text == "":
        return setting.default  # compose passes unset optional numbers as empty strings
    elif setting.type is int:
        if text.lower() in _BOOL_WORDS:
            value = _BOOL_WORDS[text.lower()]
        else:
            try:
                value = int(text)
            except ValueError:
                raise bad("is not a whole number") from None
    elif setting.type is float:
        try:
            value = float(text)
        except ValueError:
            raise bad("is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("is not a finite number")
    else:
        value = setting.type(text)
    if setting.choices and value not in setting.choices:
        raise bad("is not a choice")
    if setting.switch and value not in (0, 1) and not (setting.default == -1 and value == -1):
        raise bad("is not a switch value")
    if setting.min is not None and value < setting.min:
        raise bad("is too small")
    if setting.max is not None and value > setting.max:
        raise bad("is too large")
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The YAML config file as {ENV_NAME: value}; keys are setting names in any case."""
    import difflib

    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingError(f"config file {path} does not exist; fix: give an existing file to --config "
                           f"(`engagement config --example > {path.name}` writes one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"config file {path} cannot be read ({exc}); fix: check its permissions") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SettingError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingError(f"config file {path} must be a mapping of setting: value (see `engagement config "
                           f"--example`)")
    known = {s.env for s in all_settings()} | {"METRICS_PORT"}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).upper().replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0].lower()}?)" if close else ""
            raise SettingError(f"config file {path}: unknown setting {key!r}{hint}; `engagement config --example` "
                               f"lists every setting")
        out[name] = value
    return out


FILE_SUFFIX = "_FILE"


def value_from_file(env: Mapping[str, str], name: str) -> str | None:
    """The value of `name` read from the file `<name>_FILE` names (Docker's convention for secrets:
    compose mounts a `secrets:` entry at /run/secrets/<secret>, so a password or token need not be
    in the container's environment, where `docker inspect` shows it); None when it is not set.
    One trailing newline is dropped (`echo ... > file`); raises SettingError (one line) when the
    file cannot be read."""
    path = env.get(name + FILE_SUFFIX)
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").removesuffix("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"setting {name}{FILE_SUFFIX}={path!r}: cannot read it ({exc.__class__.__name__})") from None


def resolve(settings: list[Setting], flags: dict[str, Any], env: Mapping[str, str],
            config_file: str | None) -> dict[str, Any]:
    """Values by precedence: flag > environment (NAME, then the file NAME_FILE names) > config
    file > default, each validated."""
    from_file = read_config_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    for s in settings:
        if flags.get(s.dest) is not None:
            raw, origin = flags[s.dest], f"flag {s.flag}"
        elif s.env in env:
            raw, origin = env[s.env], "environment"
        elif (secret := value_from_file(env, s.env)) is not None:
            raw, origin = secret, f"file {s.env}{FILE_SUFFIX}"
        elif s.env in from_file:
            raw, origin = from_file[s.env], f"config file {config_file}"
        else:
            values[s.dest] = s.default
            continue
        values[s.dest] = parse_value(s, raw, origin)
    return values


METRICS_PORT = Setting("METRICS_PORT", 0, "Prometheus metrics and /healthz port (0 = off)", int, min=0, max=65535)


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, settings: list[Setting],
              skip: Set[str] = frozenset()) -> None:
    """One flag per setting; values stay text (None = not given) until `resolve` checks them."""
    for s in settings:
        if s.env in skip:
            continue
        extra = f"; {allowed(s)}" if s.choices or s.switch else ""
        kwargs: dict[str, Any] = {"nargs": "?", "const": "1"} if s.switch else {}
        parser.add_argument(s.flag, dest=s.dest, default=None, metavar=s.env, **kwargs,
                            help=f"{s.help} (env {s.env}, default {s.default!r}{extra})")


def build_parser(service: str, parser: argparse.ArgumentParser | None = None,
                 env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    parser = parser or CommandParser(
        prog=f"engagement {service}",
        epilog="Each setting is also an environment variable (the name after 'env') and a key of the YAML "
               "config file; flags win over the environment, the environment over the file.")
    add_flags(parser, settings_for(service))
    parser.add_argument("--metrics-port", dest="metrics_port", default=None,
                        help=f"Prometheus metrics and /healthz port (env METRICS_PORT, default "
                             f"{METRICS_PORTS.get(service, 0)}; 0 = off)")
    parser.add_argument("--config", default=None,
                        help="YAML config file (env CONFIG_FILE; `engagement config --example` prints one)")
    return parser


def process_environment() -> Mapping[str, str]:
    """The process's environment, read here only: settings come from it (tests pass their own),
    and a caller that must hand it on (a child's environment, the secrets check) gets it here."""
    return os.environ


def setting_from_environment(name: str) -> Any:
    """One setting's value from the environment (or the file NAME_FILE names), else its default,
    checked like every other: for code that has no settings object at hand (a command's
    defaults, a model path resolved by a tool)."""
    setting = next(s for s in [*all_settings(), METRICS_PORT] if s.env == name)
    return resolve([setting], {}, process_environment(), None)[setting.dest]


def log_level_of_environment(default: str = "INFO") -> str:
    """LOG_LEVEL as the environment gives it (else `default`), for logging set up before the settings
    are resolved (a bad value is reported by the settings then)."""
    level = process_environment().get("LOG_LEVEL", default)
    return level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else default


def models_dir() -> Path:
    """MODELS_DIR: where fetched weights and model bundles live."""
    return Path(str(setting_from_environment("MODELS_DIR")))


# What `engagement run` tells a child process it starts, besides its settings (not for a user to set):
# its own pid (a service stops when the launcher is gone), a restarted capture's restart count
# and its stream's start, each of several captures' sampling phase, the file whose coming says
# every capture of the class is up (services/capture/service.py), and how long after that a capture
# of a large class starts (its wave, services/launcher/plan.py).
PARENT_PID_ENV, RESTART_ENV, STREAM_STARTED_ENV, PHASE_ENV, START_GATE_ENV, START_DELAY_ENV = (
    "PARENT_PID", "CAPTURE_RESTART", "STREAM_STARTED_AT", "SAMPLE_PHASE", "CAPTURES_UP_FILE", "CLASS_START_DELAY")
FROM_LAUNCHER = (PARENT_PID_ENV, RESTART_ENV, STREAM_STARTED_ENV, PHASE_ENV, START_GATE_ENV, START_DELAY_ENV)


def from_launcher(name: str) -> str:
    """A value of FROM_LAUNCHER, "" when not started by the launcher."""
    if name not in FROM_LAUNCHER:
        raise KeyError(name)
    return process_environment().get(name, "")


def user_cache_dir() -> Path:
    """The XDG cache folder ($XDG_CACHE_HOME, else ~/.cache)."""
    return Path(process_environment().get("XDG_CACHE_HOME") or Path.home() / ".cache")


def config_file_of(flags: dict[str, Any], env: Mapping[str, str]) -> str | None:
    """The config file: `--config` (taken out of `flags`), else CONFIG_FILE, else none."""
    return flags.pop("config", None) or env.get("CONFIG_FILE") or None


def load_settings(service: str, argv: list[str] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """The typed settings of `service` (its Struct of shared/ops/settings.py); raises SettingError
    (one line) for a bad value or config file."""
    env = process_environment() if env is None else env
    flags = vars(build_parser(service, env=env).parse_args(argv))
    config_file = config_file_of(flags, env)
    settings = [*settings_for(service), Setting("METRICS_PORT", METRICS_PORTS.get(service, 0),
                                                METRICS_PORT.help, int, min=0, max=65535)]
    return BY_SERVICE.get(service, Settings)(**resolve(settings, flags, env, config_file))


def env_names() -> set[str]:
    """Every environment variable the project reads (checked against compose's .env.example)."""
    return {s.env for s in all_settings()} | {"METRICS_PORT", "CONFIG_FILE"}


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def example_yaml() -> str:
    """A config file with every setting at its default, each with a comment (`engagement config --example`)."""
    lines = ["# Engagement monitor settings. Use: engagement run --config engagement.yaml (or CONFIG_FILE=...).",
             "# Precedence: command-line flags > environment variables > this file > defaults.",
             "# Keys are the environment variable names in lower case; delete what you do not change.",
             "# Links (*_IN/*_OUT) and METRICS_PORT are chosen by `engagement run` itself; they matter to",
             "# services started one by one (compose, Kubernetes)."]
    seen: set[str] = set()
    groups = [("every service", COMMON), *SERVICES.items(), ("engagement run (the launcher)", LAUNCHER)]
    for group, settings in groups:
        fresh = [s for s in settings if s.env not in seen]
        if not fresh:
            continue
        lines += ["", f"# ---- {group} " + "-" * max(4, 70 - len(group))]
        for s in fresh:
            seen.add(s.env)
            lines.append(f"# {s.help} [env {s.env}; {allowed(s)}]")
            lines.append(f"{s.dest}: {_yaml_scalar(s.default)}")
    return "\n".join(lines) + "\n"


def report_fallback_dir(configured: str = "") -> Path:
    """Where a report goes when REPORT_DIR cannot be written: REPORT_FALLBACK_DIR, else the XDG
    state folder, else the temp folder (the first of them that can be created)."""
    import tempfile

    candidates = [configured] if configured else []
    state = process_environment().get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    candidates += [str(Path(state) / "engagement" / "reports"),
                   str(Path(tempfile.gettempdir()) / "engagement-reports")]
    for c in candidates:
        try:
            Path(c).mkdir(parents=True, exist_ok=True)
            return Path(c)
        except OSError:
            continue
    return Path(tempfile.gettempdir())
