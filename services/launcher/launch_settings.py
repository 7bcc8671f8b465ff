"""The settings of one `engagement run`, resolved once (flag > environment > config file >
default) into a typed LaunchSettings: each pipeline service's own Struct (its links and metrics
port left to plan.py), the settings every service takes, the launcher's own, and the class's
streams; and the session id made when none is given. A setting several services take is resolved
once and is the same in each of their Structs."""

from __future__ import annotations

import argparse
import dataclasses
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import msgspec

from services.launcher.streams import Stream, plan_streams
from shared.bus.links import LINKS as ALL_LINKS
from shared.ops.config import (
    SERVICES,
    Setting,
    SettingError,
    all_settings,
    config_file_of,
    process_environment,
    read_config_file,
    resolve,
)
from shared.ops.settings import RunSettings

PIPELINE = ["capture", "facedetect", "sequencer", "inference", "aggregator", "reporter"]
LINK_SETTINGS = {name for link in ALL_LINKS for name in (link.in_setting, link.out_setting)}
# What each process's own plan gives it (plan.py), empty in the run's Struct.
PLANNED: dict[str, Any] = {**{name.lower(): "" for name in LINK_SETTINGS}, "metrics_port": 0}


class LaunchSettings(RunSettings, kw_only=True):
    """The typed settings of one `engagement run`: every run setting and the class's streams
    (`--source`, repeatable), built once by `resolve_run` and passed down to every step."""

    sources: list[Stream]
    session_given: bool  # False: SESSION_ID was made here (a made id is never another run's)


def run_settings() -> list[Setting]:
    """Every setting `engagement run` takes: the pipeline's (links are planned here) and its own.

    REDIS_URL has no default here: not given means a private redis-server.
    """
    out = []
    bridge_only = {s.env for s in SERVICES["mqtt_bridge"]} - {s.env for n in PIPELINE for s in SERVICES[n]}
    for s in all_settings():
        if s.env in LINK_SETTINGS or s.env in bridge_only:
            continue
        if s.env == "REDIS_URL":
            s = dataclasses.replace(s, default="")
        out.append(s)
    return out


def resolve_run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> LaunchSettings:
    """Every run setting, flag > environment > config file > default, and the class's streams; the
    session id made when none is given. SettingError (one line) if one is bad.

    One pass, in order: the flags, the values resolved from them, the streams of the sources,
    the settings the streams decide; then the Structs, built once from the finished values."""
    env = process_environment() if env is None else env
    flags: dict[str, Any] = args.__dict__.copy()
    config = config_file_of(flags, env)
    given = _sources_given(flags, env, config)
    return _typed(resolve(run_settings(), flags, env, config), given)


def _typed(values: dict[str, Any], given: list[Any]) -> LaunchSettings:
    """The run's Struct of resolved `values` (by lower-case name) and the given sources: each part
    takes its own settings; the links and metrics ports, planned per process by plan.py, stay empty."""
    values["reconnect"], values["retry_limit"] = _reconnect(values["reconnect"])
    streams = plan_streams(given or [values["source"]], values["stream_id"])
    values.update(source=streams[0].source, stream_id=streams[0].id)
    if len(streams) > 1:
        values["streams"] = ",".join(stream.id for stream in streams)
    session_given = bool(values["session_id"])
    if not session_given:
        values["session_id"] = new_session_id(values["stream_id"])

    def part(cls: type[msgspec.Struct]) -> Any:
        return cls(**{name: values[name] if name in values else PLANNED[name] for name in cls.__struct_fields__})

    return LaunchSettings(**{f.name: part(f.type) for f in msgspec.structs.fields(RunSettings)},
                          sources=streams, session_given=session_given)


def _sources_given(flags: dict[str, Any], env: Mapping[str, str], config: str | None) -> list[Any]:
    """The `--source` values, else the config file's `source:` list (when the environment sets none).
    The first stands for SOURCE in `flags` (checked like any flag; its stream's source replaces it)."""
    sources = flags.get("source")
    sources = [sources] if isinstance(sources, str) else list(sources or [])
    if not sources and "SOURCE" not in env and config:
        listed = read_config_file(config).get("SOURCE")
        sources = listed if isinstance(listed, list) else []
    if sources:
        first = sources[0]
        flags["source"] = str(first.get("source", "")) if isinstance(first, dict) else str(first)
    return sources


def _reconnect(given: str) -> tuple[str, int]:
    """RECONNECT ('forever' or a number of tries) and the captures' RETRY_LIMIT it means."""
    reconnect = str(given).strip().lower()
    if reconnect == "forever":
        return reconnect, 0
    if reconnect.isdigit() and int(reconnect) >= 1:
        return reconnect, int(reconnect)
    raise SettingError(f"setting RECONNECT={given!r} is not allowed; allowed: 'forever' or a "
                       f"number of tries of at least 1, default '3'")


def new_session_id(stream: str) -> str:
    """Unique even for two classes started in the same second against one Redis."""
    return f"{stream}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
