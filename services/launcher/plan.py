"""The plan of a run: each child process's environment (every setting of the run's typed
settings, services/launcher/launch_settings.py, the links on free loopback ports or Unix sockets,
a metrics port each), before anything starts."""

from __future__ import annotations

import logging
from pathlib import Path

from services.launcher.launch_settings import PIPELINE, PLANNED, LaunchSettings
from services.launcher.streams import Stream
from shared.bus.links import LINKS as ALL_LINKS
from shared.ops import cpu_budget
from shared.ops.card_info import BASELINE
from shared.ops.config import METRICS_PORTS, PHASE_ENV, START_DELAY_ENV, process_environment
from shared.ops.ports import free_ports, is_free
from shared.ops.settings import CommonSettings

log = logging.getLogger("launcher")

RUN_SERVICES = [*PIPELINE, "web"]  # stop order too: the page goes last, once the report is written
START_ORDER = list(reversed(RUN_SERVICES))  # consumers first, so nothing waits on a missing peer
# Every link of shared/bus/links.py: the acks too (Redis writes acknowledged: inference resends the
# rest), and the live page's (the overlay as JPEG and every update).
LINKS = {link.name: link for link in ALL_LINKS if {link.producer, link.consumer} <= set(RUN_SERVICES)}
CAPTURE_LINKS = [name for name, link in LINKS.items() if link.producer == "capture"]
# A large class starts in waves. facedetect holds each new face's first second until the tracker has
# decided who it is (services/facedetect/holdback.py), then sends it on at once: when every stream
# started together, every stream's first second reached inference together, and the stages caught
# up on it for seconds (56 webcams: frames up to 0.6 s late in the class's first 2 s, under 0.14 s
# from then on). Waves of STREAMS_PER_WAVE streams, WAVE_SECONDS apart (at most MAX_WAVES: the last
# wave of a class of 29 or more starts 3.5 s after the first), bring those seconds one wave at a time.
# Four a wave, not eight: eight-face rooms, 2 runs each (bench/RESULTS.md, 2026-12-06 06:2x): 16 rooms
# p99 441, 399 ms in waves of 8 and 157, 115 ms in waves of 4; 19 rooms failed at the start (530 ms)
# in waves of 8 and held (263, 333 ms) in waves of 4.
STREAMS_PER_WAVE = 4
WAVE_SECONDS = 0.5
MAX_WAVES = 8


def capture_names(streams: list[Stream]) -> list[str]:
    """The launcher's name of each stream's capture: `capture` alone, else capture-<stream id>."""
    return ["capture"] if len(streams) == 1 else [f"capture-{stream.id}" for stream in streams]


def start_waves(captures: int) -> int:
    """How many waves a class of `captures` streams starts in (1: all at once)."""
    return min(MAX_WAVES, max(1, -(-captures // STREAMS_PER_WAVE)))


def services_of(envs: dict[str, dict[str, str]]) -> list[str]:
    """RUN_SERVICES planned in `envs`, each capture of the class in capture's place (the stop order)."""
    captures = [name for name in envs if name.startswith("capture")]
    return [*captures, *(name for name in RUN_SERVICES if name != "capture" and name in envs)]


def plan_environment(settings: LaunchSettings, redis_url: str, bus_dir: str = "") -> dict[str, dict[str, str]]:
    """Per-process environment (by service name; captures as in `capture_names`): every resolved
    setting, links on free loopback ports (or Unix sockets in `bus_dir`: TRANSPORT=ipc), metrics
    ports. Each capture binds its own frames link; facedetect and the reporter read them all."""
    captures = capture_names(settings.sources)
    processes = [*captures, *(name for name in RUN_SERVICES if name != "capture")]
    ports = free_ports(_ports_needed(len(captures)))  # one call: separate calls may hand out a port twice
    spare_web_port = ports.pop()
    link_ports = {name: [ports.pop(0) for _ in captures] if name in CAPTURE_LINKS else [ports.pop(0)]
                  for name in LINKS}
    metrics_ports = _metrics_ports(settings, captures, processes, ports)
    own = {name: dict(METRICS_PORT=str(metrics_ports[name]), **_link_environment(name, captures, link_ports, bus_dir))
           for name in processes}
    _plan_captures(own, captures, settings.sources)
    if settings.inference.model != BASELINE and not settings.common.cpu_affinity:
        _pin_small_box(own, captures)
    base = _base_environment(settings, redis_url)
    envs = {name: {**base, **own[name]} for name in processes}
    _without_a_sequencer_for_a_frame_model(envs)
    # The launcher's page is for this machine only: loopback, whatever the environment says.
    web_port = settings.web.web_port
    if not web_port or web_port in ports or not is_free(web_port):
        web_port = spare_web_port
    envs["web"].update(WEB_BIND="127.0.0.1", WEB_PORT=str(web_port), SPARE_WEB_PORT=str(spare_web_port))
    return envs


def _plan_captures(envs: dict[str, dict[str, str]], captures: list[str], streams: list[Stream]) -> None:
    """Each capture's stream (source, id, its own FPS if given), its sampling phase and start wave."""
    waves = start_waves(len(captures))
    if waves > 1:
        log.info("the class's %d streams start in %d waves %g s apart (the first second of each stream's faces "
                 "goes downstream at once, once the tracker has decided who they are)", len(captures), waves,
                 WAVE_SECONDS)
    for index, (name, stream) in enumerate(zip(captures, streams, strict=True)):
        envs[name].update(SOURCE=stream.source, STREAM_ID=stream.id)
        if len(captures) > 1:  # spread over the sampling period: no burst of every stream's frame at once
            envs[name][PHASE_ENV] = f"{index / len(captures):.4f}"
        if waves > 1:
            envs[name][START_DELAY_ENV] = f"{(index % waves) * WAVE_SECONDS:g}"
        if stream.fps is not None:
            envs[name]["FPS"] = f"{stream.fps:g}"


def _without_a_sequencer_for_a_frame_model(envs: dict[str, dict[str, str]]) -> None:
    """A model of single crops sampled every frame (SEQUENCE_LENGTH 1, STRIDE 1: the attention baseline, a frame
    CNN) has nothing to buffer: the sequencer would pass each frame's faces on as its batch. Then no sequencer
    runs and inference reads facedetect's faces itself (shared/bus/frame_batch.py): one process and one hop fewer
    a frame (72 webcams: the services' CPU 161.9, 167.2 -> 156.9, 153.9 % of a core, bench/RESULTS.md)."""
    sequencer = envs["sequencer"]
    try:
        frame_model = int(sequencer["SEQUENCE_LENGTH"]) == 1 and int(sequencer.get("STRIDE") or 1) == 1
    except ValueError:  # not a number: the sequencer runs and says so
        return
    if frame_model:
        envs["inference"]["BATCHES_IN"] = sequencer["FACES_IN"]
        del envs["sequencer"]
        log.info("the model takes one crop a student every frame: no sequencer, inference reads facedetect's faces")


def _base_environment(settings: LaunchSettings, redis_url: str) -> dict[str, str]:
    """What every child gets: the launcher's own environment (CONFIG_FILE resolved here, once) with
    every run setting but the launcher's, the Redis to use and the model's sequence length."""
    inherited = {k: v for k, v in process_environment().items() if k != "CONFIG_FILE"}
    base = dict(inherited)
    base.update(_settings_environment(settings))
    sequence_length = inherited.get("SEQUENCE_LENGTH")
    if not sequence_length:
        from shared.ops.card_info import sequence_length_for

        sequence_length = str(sequence_length_for(settings.inference.model, settings.common.models_dir))
    base.update({"REDIS_URL": redis_url, "SEQUENCE_LENGTH": sequence_length, "PYTHONUNBUFFERED": "1"})
    return base


def _settings_environment(settings: LaunchSettings) -> dict[str, str]:
    """Every setting of the services' parts of the run (each service's own Struct) by its variable,
    but those planned per process here (links, metrics port); the launcher's own are not passed on."""
    env: dict[str, str] = {}
    for part in settings.parts():
        if isinstance(part, CommonSettings):
            env.update({name.upper(): str(getattr(part, name)) for name in part.__struct_fields__
                        if name not in PLANNED})
    return env


def _ports_needed(captures: int) -> int:
    """The links (a link capture sends on has one endpoint per capture), a metrics port per
    process, and a spare for the page when WEB_PORT is taken."""
    extra = captures - 1
    return len(LINKS) + len(RUN_SERVICES) + 1 + extra * (len(CAPTURE_LINKS) + 1)


def _metrics_ports(settings: LaunchSettings, captures: list[str], processes: list[str],
                   ports: list[int]) -> dict[str, int]:
    """FIXED_PORTS=1 (and all free): the configured ports; else free ones, taken from `ports`."""
    if settings.launcher.fixed_ports and all(is_free(p) for p in METRICS_PORTS.values()):
        metrics_ports = {name: METRICS_PORTS[name] for name in RUN_SERVICES}
        metrics_ports.update({name: ports.pop(0) for name in captures[1:]})  # one fixed port for capture
        metrics_ports[captures[0]] = METRICS_PORTS["capture"]
        return metrics_ports
    return {name: ports.pop(0) for name in processes}


def _link_environment(name: str, captures: list[str], link_ports: dict[str, list[int]],
                      bus_dir: str) -> dict[str, str]:
    """The link settings of process `name`: the side of each link its service is on."""
    service = "capture" if name in captures else name
    env = {}
    for link in LINKS.values():
        endpoints = [f"ipc://{bus_dir}/{link.name}" + (f"-{n}" if n else "") if bus_dir
                     else f"tcp://127.0.0.1:{port}" for n, port in enumerate(link_ports[link.name])]
        if len(endpoints) == 1:
            out_spec, in_spec = link.local_specs(0, endpoints[0])
            out_specs = [out_spec]
        else:
            out_specs, in_spec = link.local_specs_many(endpoints)
        if service == link.producer:
            env[link.out_setting] = out_specs[captures.index(name) if name in captures else 0]
        if service == link.consumer:
            env[link.in_setting] = in_spec
    return env


def use_run_folder_for_journal(envs: dict[str, dict[str, str]], journal_dir: str, state_dir: Path) -> None:
    """The aggregator journals into the run's folder (STATE_DIR/runs/<session>/), where the reporter and the
    next start find it, unless JOURNAL_DIR (`journal_dir`) says otherwise; the web keeps the marks there."""
    folder = journal_dir or str((state_dir / "runs").resolve())
    for name in ("aggregator", "reporter", "web"):
        envs[name]["JOURNAL_DIR"] = folder


def _pin_small_box(envs: dict[str, dict[str, str]], captures: list[str]) -> None:
    """A trained model on a small box: the light stages share a core, the model call has both."""
    pinned = cpu_budget.small_box_affinity()
    for name, env in envs.items():
        service = "capture" if name in captures else name
        if service in pinned:
            env["CPU_AFFINITY"] = pinned[service]
