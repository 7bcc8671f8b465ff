"""The plan of a run: its settings (flag > environment > config file > default), its session id,
and each child process's environment (every setting, the links on free loopback ports or Unix
sockets, a metrics port each), before anything starts."""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
from datetime import datetime, timezone
from typing import Any

from services.launcher.streams import Stream, parse_source, plan_streams
from shared import cpu_budget
from shared.card_info import BASELINE
from shared.config import (
    LAUNCHER,
    METRICS_PORTS,
    SERVICES,
    SettingError,
    all_settings,
    read_config_file,
    resolve,
)
from shared.links import LINKS as ALL_LINKS
from shared.ports import free_ports, is_free

PIPELINE = ["capture", "facedetect", "sequencer", "inference", "aggregator", "reporter"]
RUN_SERVICES = [*PIPELINE, "web"]  # stop order too: the page goes last, once the report is written
START_ORDER = list(reversed(RUN_SERVICES))  # consumers first, so nothing waits on a missing peer
# Every link of shared/links.py: the acks too (Redis writes acknowledged: inference resends the
# rest), and the live page's (the overlay as JPEG and every update).
LINKS = {link.name: link for link in ALL_LINKS if {link.producer, link.consumer} <= set(RUN_SERVICES)}
CAPTURE_LINKS = [name for name, link in LINKS.items() if link.producer == "capture"]
LINK_SETTINGS = {name for link in ALL_LINKS for name in (link.in_setting, link.out_setting)}


def run_settings() -> list[Any]:
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


def resolve_run(args: argparse.Namespace) -> dict[str, Any]:
    """Every run setting, flag > environment > config file > default; SettingError if one is bad."""
    flags = dict(vars(args))
    config = flags.pop("config", None) or os.environ.get("CONFIG_FILE") or None
    sources = flags.get("source")
    sources = [sources] if isinstance(sources, str) else list(sources or [])
    if not sources and "SOURCE" not in os.environ and config:
        listed = read_config_file(config).get("SOURCE")
        sources = listed if isinstance(listed, list) else []
    if sources:  # the first source stands for SOURCE in the checks and the single-stream settings
        first = sources[0]
        flags["source"] = str(first.get("source", "")) if isinstance(first, dict) else parse_source(str(first))[1]
    values = resolve(run_settings(), flags, os.environ, config)
    streams = plan_streams(sources or [values["source"]], values["stream_id"])
    values["source"], values["stream_id"] = streams[0].source, streams[0].id
    if len(streams) > 1:
        values["streams"] = ",".join(stream.id for stream in streams)
    values["sources"] = streams
    reconnect = str(values["reconnect"]).strip().lower()
    if reconnect == "forever":
        values["retry_limit"] = 0
    elif reconnect.isdigit() and int(reconnect) >= 1:
        values["retry_limit"] = int(reconnect)
    else:
        raise SettingError(f"setting RECONNECT={values['reconnect']!r} is not allowed; allowed: 'forever' or a "
                           f"number of tries of at least 1, default '3'")
    values["reconnect"] = reconnect
    return values


def new_session_id(stream: str) -> str:
    """Unique even for two classes started in the same second against one Redis."""
    return f"{stream}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def capture_names(streams: list[Stream]) -> list[str]:
    """The launcher's name of each stream's capture: `capture` alone, else capture-<stream id>."""
    return ["capture"] if len(streams) == 1 else [f"capture-{stream.id}" for stream in streams]


def services_of(envs: dict[str, dict[str, str]]) -> list[str]:
    """RUN_SERVICES with each capture of the class in capture's place (the stop order)."""
    captures = [name for name in envs if name.startswith("capture")]
    return [*captures, *(name for name in RUN_SERVICES if name != "capture")]


def plan_environment(args: argparse.Namespace | dict[str, Any], redis_url: str,
                     bus_dir: str = "") -> dict[str, dict[str, str]]:
    """Per-process environment (by service name; captures as in `capture_names`): every resolved
    setting, links on free loopback ports (or Unix sockets in `bus_dir`: TRANSPORT=ipc), metrics
    ports. Each capture binds its own frames link; facedetect and the reporter read them all."""
    values = args if isinstance(args, dict) else resolve_run(args)
    streams: list[Stream] = values.get("sources") or [Stream(values["stream_id"], values["source"])]
    captures = capture_names(streams)
    processes = [*captures, *(name for name in RUN_SERVICES if name != "capture")]
    base = {k: v for k, v in os.environ.items() if k != "CONFIG_FILE"}  # resolved here, once
    for s in run_settings():
        if s.env in {c.env for c in LAUNCHER}:
            continue
        value = values[s.dest]
        base[s.env] = str(value)
    sequence_length = os.environ.get("SEQUENCE_LENGTH")
    if not sequence_length:
        from shared.card_info import sequence_length_for

        sequence_length = str(sequence_length_for(values["model"], values["models_dir"]))
    base.update({"REDIS_URL": redis_url, "SEQUENCE_LENGTH": sequence_length, "PYTHONUNBUFFERED": "1"})
    # One call for every port (separate calls may hand out the same port twice): the links,
    # a metrics port per service, and a spare for the page when WEB_PORT is taken.
    # A link capture sends on has one endpoint per capture.
    extra = len(captures) - 1
    ports = free_ports(len(LINKS) + len(RUN_SERVICES) + 1 + extra * (len(CAPTURE_LINKS) + 1))
    spare_web_port = ports.pop()
    link_ports = {name: [ports.pop(0) for _ in captures] if name in CAPTURE_LINKS else [ports.pop(0)]
                  for name in LINKS}
    if values.get("fixed_ports") and all(is_free(p) for p in METRICS_PORTS.values()):
        metrics_ports = {name: METRICS_PORTS[name] for name in RUN_SERVICES}
        metrics_ports.update({name: ports.pop(0) for name in captures[1:]})  # one fixed port for capture
        metrics_ports[captures[0]] = METRICS_PORTS["capture"]
    else:
        metrics_ports = {name: ports.pop(0) for name in processes}
    envs = {}
    for name in processes:
        env = dict(base, METRICS_PORT=str(metrics_ports[name]))
        service = "capture" if name in captures else name
        for link in LINKS.values():
            endpoints = [f"ipc://{bus_dir}/{link.name}" + (f"-{n}" if n else "") if bus_dir
                         else f"tcp://127.0.0.1:{port}" for n, port in enumerate(link_ports[link.name])]
            if len(endpoints) == 1:
                out_specs, in_spec = [link.local_specs(0, endpoints[0])[0]], link.local_specs(0, endpoints[0])[1]
            else:
                out_specs, in_spec = link.local_specs_many(endpoints)
            if service == link.producer:
                env[link.out_setting] = out_specs[captures.index(name) if name in captures else 0]
            if service == link.consumer:
                env[link.in_setting] = in_spec
        envs[name] = env
    for name, stream in zip(captures, streams, strict=True):
        envs[name].update(SOURCE=stream.source, STREAM_ID=stream.id)
        if stream.fps is not None:
            envs[name]["FPS"] = f"{stream.fps:g}"
    # The launcher's page is for this machine only: loopback, whatever the environment says.
    web_port = int(values.get("web_port") or 0)
    if not web_port or web_port in ports or not is_free(web_port):
        web_port = spare_web_port
    envs["web"].update(WEB_BIND="127.0.0.1", WEB_PORT=str(web_port), SPARE_WEB_PORT=str(spare_web_port))
    if values["model"] != BASELINE and not base.get("CPU_AFFINITY"):
        # A trained model on a small box: the light stages share a core, the model call has both.
        pinned = cpu_budget.small_box_affinity()
        for name in processes:
            service = "capture" if name in captures else name
            if service in pinned:
                envs[name]["CPU_AFFINITY"] = pinned[service]
    return envs
