"""Run one training step as a batch container on this machine, through the Docker SDK for Python.

    python -m training.docker_run --data /srv/engagement -- train --fps 1 --family cnn --data-type faces
    python -m training.docker_run --gpus none --data /srv/engagement -- extract --fps 1

The container is the training image (compose/Dockerfile, target `train`, entrypoint
`engagement-train`), so `<step> [args]` is exactly what `engagement-train` takes. The host
folder given by --data is mounted at /data, and the steps find their folders there through
DAISEE_ROOT, FRAMES_ROOT and RUNS_DIR. GPUs are requested like `docker run --gpus`. The
container's output is streamed here as it comes, and its exit code becomes ours; 125 (as with
`docker run`) means the container could not be started: no engine, no image, no GPU runtime.
"""

from __future__ import annotations

import argparse
import codecs
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shared.ops.command_parser import CommandParser

log = logging.getLogger("docker_run")

STEPS = ("synth", "labels", "extract", "faces", "augment", "train", "evaluate", "export")
DEFAULT_IMAGE = "engagement-train:latest"
CONTAINER_DATA = "/data"
CANNOT_START = 125
INTERRUPTED = 130


@dataclass
class StepRun:
    step: str
    args: list[str] = field(default_factory=list)
    image: str = DEFAULT_IMAGE
    gpus: str = "all"  # "all", "none", a count ("2") or device ids ("0,1")
    data_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    remove: bool = True


def device_requests(gpus: str) -> list[Any]:
    """The SDK's equivalent of `docker run --gpus <gpus>`."""
    from docker.types import DeviceRequest

    gpus = gpus.strip().lower()
    if gpus in ("none", "", "0"):
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if gpus.isdigit():
        return [DeviceRequest(count=int(gpus), capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=[g.strip() for g in gpus.split(",")], capabilities=[["gpu"]])]


def container_kwargs(run: StepRun) -> dict[str, Any]:
    """Keyword arguments of `client.containers.run` for one step (detached: we stream the logs)."""
    environment = {"DAISEE_ROOT": f"{CONTAINER_DATA}/DAiSEE", "FRAMES_ROOT": f"{CONTAINER_DATA}/frames",
                   "RUNS_DIR": f"{CONTAINER_DATA}/runs", "PYTHONUNBUFFERED": "1", **run.env}
    kwargs: dict[str, Any] = {
        "command": [run.step, *run.args],
        "detach": True,
        "environment": environment,
        "device_requests": device_requests(run.gpus),
        "labels": {"app.kubernetes.io/part-of": "engagement-monitor", "engagement.step": run.step},
        "shm_size": "2g",  # tf.data and FFmpeg workers share memory; Docker's 64 MB default is too small
    }
    if run.data_dir is not None:
        kwargs["volumes"] = {str(Path(run.data_dir).resolve()): {"bind": CONTAINER_DATA, "mode": "rw"}}
    if run.name:
        kwargs["name"] = run.name
    return kwargs


def stream_logs(container: Any, out: IO[str]) -> None:
    # Chunks are raw bytes and may split a UTF-8 character: decode incrementally.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
        out.write(decoder.decode(chunk))
        out.flush()
    out.write(decoder.decode(b"", final=True))
    out.flush()


def run_step(run: StepRun, client: Any = None, out: IO[str] | None = None) -> int:
    """Start the step's container, stream its output to `out`, return its exit code."""
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound

    out = out or sys.stdout
    try:
        client = client or docker.from_env()
        container = client.containers.run(run.image, **container_kwargs(run))
    except ImageNotFound:
        log.error("image %s not found: build it with `docker build -f compose/Dockerfile --target train "
                  "-t %s .` (or pull it from your registry)", run.image, run.image)
        return CANNOT_START
    except APIError as exc:  # e.g. no NVIDIA runtime for --gpus: "could not select device driver"
        log.error("the Docker engine refused to start %s: %s", run.step, exc.explanation or exc)
        return CANNOT_START
    except DockerException as exc:
        log.error("no Docker engine reachable (%s); is the daemon running and DOCKER_HOST right?", exc)
        return CANNOT_START
    log.info("step %s running in container %s (image %s, gpus %s)", run.step, container.name or container.id,
             run.image, run.gpus)
    code = 1
    try:
        stream_logs(container, out)
        status = container.wait()
        code = int(status.get("StatusCode", 1))
        if status.get("Error"):
            log.error("container error: %s", status["Error"])
    except KeyboardInterrupt:
        log.warning("interrupted: stopping the container of %s", run.step)
        container.stop(timeout=30)
        code = INTERRUPTED
    finally:
        if run.remove:
            try:
                container.remove(force=True)
            except DockerException as exc:
                log.warning("could not remove container %s: %s", container.id, exc)
    log.info("step %s exited with %d", run.step, code)
    return code


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="python -m training.docker_run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=DEFAULT_IMAGE, help=f"training image (default {DEFAULT_IMAGE})")
    p.add_argument("--gpus", default="all", help="all | none | a count | device ids like 0,1 (as docker --gpus)")
    p.add_argument("--data", type=Path, help="host folder mounted at /data (DAiSEE/, frames/, runs/ inside)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment variable")
    p.add_argument("--name", help="container name")
    p.add_argument("--keep", action="store_true", help="keep the container after it exits")
    p.add_argument("step", choices=STEPS)
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments of `engagement-train <step>`")
    return p


def parse(argv: list[str]) -> StepRun:
    args = build_parser().parse_args(argv)
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            build_parser().error(f"--env wants NAME=VALUE, got {item!r}")
        env[name] = value
    step_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    return StepRun(step=args.step, args=step_args, image=args.image, gpus=args.gpus, data_dir=args.data,
                   env=env, name=args.name, remove=not args.keep)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run = parse(list(sys.argv[1:] if argv is None else argv))
    return run_step(run)


if __name__ == "__main__":
    sys.exit(main())
