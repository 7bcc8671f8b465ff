"""`make compose-test`, the part after the builds (scripts/compose-test.sh): the stack of
compose/docker-compose.yml up in podman with the `monitoring` profile, checked end to end, then
`down -v`. One line per check with the time it took; exit 1 when any check fails.

Run by the podman-compose virtualenv's Python (its PyYAML reads the merged compose file); the
sample video is made and counted by the project's own virtualenv (`.venv`, scripts/setup.sh).

Two things podman 4.3 (Debian 12) does not do that Docker Compose does, done here instead and
said so in each line:
- health checks run from systemd timers, and this machine has no systemd: a thread runs
  `podman healthcheck run` for every container every HEALTH_TICK seconds (the compose file's own
  test, retries and start period still decide the status);
- podman-compose honours `condition: service_healthy` only from podman 4.6: the services are
  started one at a time in the compose file's dependency order, each once its dependencies meet
  their conditions (healthy, completed successfully, started), as Docker Compose does;
- netavark gives the network's bridge no MAC address of its own, so the Linux bridge takes its
  lowest port's, and it changes as containers join: a container whose ARP entry still holds the
  old one has its DNS queries to the gateway dropped until the entry is renewed (30-45 s, seen
  with `tcpdump -e`), and its links wait that long. Docker sets one on its bridges; here the
  bridge's address is set as its own once the network is up (`pin_bridge_address`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.no-registry.yml")
PROJECT = os.environ.get("COMPOSE_PROJECT_NAME", "engagement-compose-test")
PROFILE = "monitoring"
# Started by nobody here, and why (the check of Prometheus's targets names them too).
LEFT_OUT = {"grafana": "Debian does not package Grafana, and no registry is reached to pull it"}
TOOLS = Path(os.environ.get("COMPOSE_TOOLS_DIR", "/var/cache/engagement-compose/tools"))
HOST_VENV = REPO / ".venv" / "bin"
HEALTH_TICK = 3.0
# The class: a video of VIDEO_SECONDS at 2 frames a second, so that FPS=2 (compose's default)
# keeps every frame and the report must count exactly the file's frames. Played in real time
# (REALTIME=1), as a camera is: as fast as the pipeline allows, 120 frames are on the bus in 2 s
# (measured), with no class left to kill the capture in.
VIDEO_SECONDS, VIDEO_FPS = 60, 2
KILL_AFTER_FRAMES = 12  # the capture is killed once it has put this many frames on the bus
TIMEOUTS = {"healthy": 600.0, "report": 600.0, "targets": 90.0, "kill": 300.0, "links": 180.0}
# Variables that held the secrets before they were files: never passed on (compose reads none).
SECRET_VARIABLES = ("REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "WEB_TOKEN")


class CheckFailed(Exception):
    pass


def log(text: str) -> None:
    print(f"compose-test: {text}", flush=True)


def run(command: list[str], check: bool = True, timeout: float = 900.0, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise CheckFailed(f"{' '.join(command[:6])} ... exited {result.returncode}: "
                          f"{(result.stderr or result.stdout).strip()[-800:]}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, predicate: Callable[[], object], timeout: float, every: float = 1.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Stack:
    """The project's containers through podman-compose and podman."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.compose = [str(TOOLS / "bin" / "podman-compose"), "--project-name", PROJECT, "--in-pod", "false",
                        *[a for f in COMPOSE_FILES for a in ("-f", str(COMPOSE_DIR / f))], "--profile", PROFILE]

    def podman_compose(self, *args: str, timeout: float = 900.0) -> subprocess.CompletedProcess:
        return run([*self.compose, *args], env=self.env, timeout=timeout, cwd=COMPOSE_DIR)

    def config(self) -> dict:
        return yaml.safe_load(self.podman_compose("config").stdout)

    def containers(self) -> dict[str, dict]:
        """service -> `podman inspect` of its container (all states)."""
        ids = run(["podman", "ps", "-a", "-q", "--filter", f"label=io.podman.compose.project={PROJECT}"]).stdout.split()
        if not ids:
            return {}
        inspected = json.loads(run(["podman", "inspect", *ids]).stdout)
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}

    def health(self, service: str) -> str:
        c = self.containers().get(service)
        if not c:
            return "absent"
        state = c["State"]
        if not state.get("Running"):
            return f"exited {state.get('ExitCode')}"
        health = state.get("Health") or state.get("Healthcheck") or {}
        return health.get("Status") or "running"

    def volume_path(self, name: str) -> Path:
        inspect = ["podman", "volume", "inspect", f"{PROJECT}_{name}", "--format", "{{.Mountpoint}}"]
        return Path(run(inspect).stdout.strip())

    def leftovers(self) -> list[str]:
        label = f"label=io.podman.compose.project={PROJECT}"
        found = []
        for kind, command in (("container", ["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", label]),
                              ("volume", ["podman", "volume", "ls", "--format", "{{.Name}}", "--filter", label]),
                              ("network", ["podman", "network", "ls", "--format", "{{.Name}}", "--filter", label])):
            found += [f"{kind} {name}" for name in run(command).stdout.split()]
        # Also by name, in case a label was not set.
        for kind, command in (("volume", ["podman", "volume", "ls", "--format", "{{.Name}}"]),
                              ("network", ["podman", "network", "ls", "--format", "{{.Name}}"])):
            found += [f"{kind} {n}" for n in run(command).stdout.split()
                      if n.startswith(f"{PROJECT}_") and f"{kind} {n}" not in found]
        return found


def pin_bridge_address(stack: Stack) -> str | None:
    """The project's bridges given their present MAC address as their own (a bridge with an address
    set keeps it as ports come and go); what was done, or None while no bridge is up yet."""
    label = f"label=io.podman.compose.project={PROJECT}"
    pinned = []
    for network in run(["podman", "network", "ls", "--format", "{{.Name}}", "--filter", label]).stdout.split():
        bridge = json.loads(run(["podman", "network", "inspect", network]).stdout)[0].get("network_interface", "")
        address_file = Path("/sys/class/net") / bridge / "address"
        if not bridge or not address_file.exists():
            return None  # made with the network's first container
        mac = address_file.read_text().strip()
        done = run(["ip", "link", "set", "dev", bridge, "address", mac], check=False)
        pinned.append(f"{bridge} {mac}" if done.returncode == 0 else f"{bridge} not pinned ({done.stderr.strip()})")
    return ", ".join(pinned) or None


class HealthTicker(threading.Thread):
    """What podman's systemd timers would do: run each container's health check now and then."""

    def __init__(self) -> None:
        super().__init__(name="health-ticker", daemon=True)
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="healthcheck")

    def run(self) -> None:
        while not self.stop.wait(HEALTH_TICK):
            names = subprocess.run(["podman", "ps", "-q", "--filter", f"label=io.podman.compose.project={PROJECT}"],
                                   capture_output=True, text=True).stdout.split()
            # All at once: one after the other, a dozen checks took 15 s a round on the loaded machine.
            # Exit 125: the container has no health check (redis-exporter); nothing to do.
            list(self.pool.map(lambda name: subprocess.run(["podman", "healthcheck", "run", name],
                                                           capture_output=True, timeout=30), names))


def start_order(services: dict[str, dict]) -> list[str]:
    """Dependencies first (depth-first over depends_on), in the compose file's order otherwise,
    except the source: capture comes last, so that the class starts once everything is up."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order or name not in services:
            return
        if name in path:
            raise CheckFailed(f"depends_on has a cycle: {' -> '.join(path + (name,))}")
        for dep in depends_on(services[name]):
            visit(dep, path + (name,))
        order.append(name)

    for name in sorted(services, key=lambda n: n == "capture"):
        visit(name, ())
    return order


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {d: (spec or {}).get("condition", "service_started") for d, spec in deps.items()}


def condition_met(stack: Stack, service: str, condition: str) -> bool:
    status = stack.health(service)
    if condition == "service_completed_successfully":
        return status == "exited 0"
    if condition == "service_healthy":
        return status == "healthy"
    return status not in ("absent",) and not status.startswith("exited")


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.lines: list[str] = []

    def run(self, name: str, body: Callable[[], str | None]) -> bool:
        start = time.monotonic()
        try:
            detail = body() or ""
            ok = True
        except (CheckFailed, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            detail, ok = f"{type(exc).__name__}: {exc}", False
        line = f"{'ok  ' if ok else 'FAIL'} {name} ({time.monotonic() - start:.1f} s){': ' + detail if detail else ''}"
        self.lines.append(line)
        log(line)
        if not ok:
            self.failed.append(name)
        return ok


def make_video(folder: Path) -> int:
    """The class's video (real faces, engagement make-sample) and its frame count, decoded."""
    path = folder / "class.avi"
    run([str(HOST_VENV / "engagement"), "make-sample", "--out", str(path), "--seconds", str(VIDEO_SECONDS),
         "--fps", str(VIDEO_FPS), "--faces", "2"])
    path.chmod(0o644)  # read by the containers' user 10001
    count = run([str(HOST_VENV / "python"), "-c",
                 "import cv2, sys\nv = cv2.VideoCapture(sys.argv[1])\nn = 0\n"
                 "while v.read()[0]:\n    n += 1\nprint(n)", str(path)])
    return int(count.stdout.strip())


def http(url: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# Where a class's frames went, per stage: what a report that misses frames is read with.
PIPELINE_PORTS = {"capture": 9101, "facedetect": 9102, "sequencer": 9103, "inference": 9104, "aggregator": 9105}
FRAME_COUNTERS = ("engagement_frames_captured_total", "engagement_frames_dropped_total",
                  "engagement_frames_repeated_total", "engagement_messages_rejected_total")


def metric_lines(stack: Stack, service: str, port: int, prefix: str = "") -> list[str] | None:
    """The lines of a running container's own /metrics that start with `prefix` (podman exec);
    None when the container is not running."""
    c = stack.containers().get(service)
    if not c or not c["State"].get("Running"):
        return None
    got = subprocess.run(["podman", "exec", c["Id"], "python", "-c", "import urllib.request as u; "
                          f"print(u.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"],
                         capture_output=True, text=True, timeout=30)
    return [line for line in got.stdout.splitlines() if line.startswith(prefix)]


def frame_figures(stack: Stack) -> str:
    """The pipeline's frame counters, from each running container's own /metrics:
    "capture: frames_captured 120, frames_dropped{queue_full} 3; facedetect: ..."."""
    said = []
    for service, port in PIPELINE_PORTS.items():
        lines = metric_lines(stack, service, port, "engagement_")
        if lines is None:
            said.append(f"{service}: not running")
            continue
        found: dict[str, float] = {}
        for line in lines:
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in FRAME_COUNTERS:
                reason = line.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in line else ""
                label = name.removeprefix("engagement_").removesuffix("_total") + (f"{{{reason}}}" if reason else "")
                found[label] = found.get(label, 0.0) + float(line.rsplit(" ", 1)[1])
        said.append(f"{service}: " + (", ".join(f"{k} {v:.0f}" for k, v in sorted(found.items()) if v) or "nothing"))
    return "; ".join(said)


def unconnected_links(stack: Stack) -> list[str]:
    """The pipeline's links (each producer's bound PUSH, engagement_link_peers) with no consumer yet."""
    missing = []
    for service, port in PIPELINE_PORTS.items():
        if service == "capture":
            continue  # started after: its own link is what it waits for (FILE_PEER_WAIT_SECONDS)
        lines = metric_lines(stack, service, port, "engagement_link_peers{")
        if not lines:
            missing.append(f"{service} (not running or no metrics)")
        for line in lines or []:
            if float(line.rsplit(" ", 1)[1]) < 1:
                missing.append(service + " " + line.split('link="', 1)[1].split('"', 1)[0])
    return missing


def class_drops(prometheus_port: int) -> str:
    """Every frame dropped during the class, by service and reason, from Prometheus (its increase()
    spans the restarts that reset a container's own counters): "capture queue_full 31"."""
    query = urllib.parse.quote("sum by (service, reason) (increase(engagement_frames_dropped_total[15m]))")
    try:
        code, body = http(f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={query}")
        found = json.loads(body)["data"]["result"] if code == 200 else []
    except (OSError, ValueError, KeyError) as exc:
        return f"not read from Prometheus ({exc})"
    said = [f"{r['metric'].get('service', '?')} {r['metric'].get('reason', '?')} {float(r['value'][1]):.0f}"
            for r in found if float(r["value"][1]) >= 0.5]
    return ", ".join(sorted(said)) or "none"


def reports(folder: Path) -> dict[str, dict]:
    """session -> report, from the JSON reports in the reports volume."""
    found = {}
    for path in sorted(folder.rglob("*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # still being written
        if isinstance(report, dict) and report.get("session"):
            found.setdefault(report["session"], report)
    return found


def main() -> int:
    if not (HOST_VENV / "engagement").exists():
        print("compose-test: .venv is missing: run ./scripts/setup.sh first (it makes the sample video)",
              file=sys.stderr)
        return 2
    media = Path(tempfile.mkdtemp(prefix="engagement-media-"))
    media.chmod(0o755)
    # The secret files of this run only, made as a user makes them (`engagement make-secrets`) in a
    # folder of its own: compose/secrets (a developer's own) is never touched.
    secret_dir = Path(tempfile.mkdtemp(prefix="engagement-secrets-")) / "secrets"
    run([str(HOST_VENV / "engagement"), "make-secrets", str(secret_dir)])
    token = (secret_dir / "web_token").read_text().strip()
    web_port, prometheus_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES},
           "SECRETS_DIR": str(secret_dir),
           "BASE_IMAGE": os.environ.get("COMPOSE_BASE_IMAGE", "localhost/engagement-debian:12"),
           "MEDIA_DIR": str(media), "SOURCE": "/media/class.avi", "REALTIME": "1", "FPS": str(VIDEO_FPS),
           "CLASS_ID": "compose-test",
           # Free host ports for the two published services; Redis and Mosquitto publish nothing.
           "WEB_HOST_PORT": str(web_port), "PROMETHEUS_PORT": str(prometheus_port)}
    stack = Stack(env)
    checks = Checks()
    ticker = HealthTicker()
    state: dict[str, object] = {}
    # Docker creates a missing bind-mount source, podman refuses it: the reporter's X socket folder.
    x11 = Path("/tmp/.X11-unix")
    if not x11.exists():
        x11.mkdir()
        x11.chmod(0o1777)  # as X servers expect it (the umask would have taken bits off mkdir's mode)

    def leftover_from_an_earlier_run() -> str:
        if stack.leftovers():
            stack.podman_compose("down", "-v", "--remove-orphans", timeout=300)
        left = stack.leftovers()
        if left:
            raise CheckFailed(f"cannot clear an earlier run: {', '.join(left)}")
        return ""

    def sample_video() -> str:
        state["frames"] = make_video(media)
        return f"{media}/class.avi, {state['frames']} frames ({VIDEO_SECONDS} s at {VIDEO_FPS} FPS, real faces)"

    def every_service_healthy() -> str:
        config = stack.config()
        services = {name: spec for name, spec in config["services"].items()
                    if (not spec.get("profiles") or PROFILE in spec["profiles"]) and name not in LEFT_OUT}
        state["services"] = services
        ticker.start()
        links_took = 0.0
        for name in start_order(services):
            for dep, condition in depends_on(services[name]).items():
                if dep in services:
                    wait_until(f"{dep} ({condition}) before {name}",
                               lambda d=dep, c=condition: condition_met(stack, d, c), TIMEOUTS["healthy"])
            if name == "capture":
                # The class starts once the pipeline behind the capture is connected: a real-time file
                # (and a camera) drops what a link still connecting cannot take. How long that took is
                # said: it is the stack's start, not a lost frame.
                started = time.monotonic()
                try:
                    wait_until("every pipeline link connected", lambda: not unconnected_links(stack),
                               TIMEOUTS["links"], every=2.0)
                except CheckFailed:
                    raise CheckFailed(f"links never connected: {unconnected_links(stack)}") from None
                links_took = time.monotonic() - started
            stack.podman_compose("up", "-d", "--no-deps", name)
            if not state.get("bridge"):
                state["bridge"] = pin_bridge_address(stack)
        waiting = {n for n, s in services.items() if "healthcheck" in s and not s["healthcheck"].get("disable")}
        wait_until("every service healthy", lambda: all(stack.health(n) == "healthy" for n in waiting),
                   TIMEOUTS["healthy"])
        status = {n: stack.health(n) for n in services}
        # One-shot services (restart "no": the bus keys, the secrets gate) are done when they exited 0.
        bad = {n: s for n, s in status.items()
               if s not in ("healthy", "running") and not (services[n].get("restart") == "no" and s == "exited 0")}
        if bad:
            raise CheckFailed(f"not healthy: {bad}")
        return (f"{sum(s == 'healthy' for s in status.values())} healthy, "
                f"{', '.join(n + ' ' + s for n, s in status.items() if s != 'healthy')}; "
                f"started in dependency order, the bridge's MAC address pinned ({state.get('bridge')}), "
                f"the capture once every pipeline link was connected "
                f"({links_took:.1f} s after its consumers were healthy), health checks run every {HEALTH_TICK:.0f} s "
                f"by this script "
                f"(podman's systemd timers: no systemd here); "
                f"left out: {', '.join(f'{k} ({v})' for k, v in LEFT_OUT.items())}")

    def capture_killed_mid_class() -> str:
        def captured() -> float:
            count = 0.0
            for line in metric_lines(stack, "capture", PIPELINE_PORTS["capture"], "engagement_frames_") or []:
                if line.startswith("engagement_frames_captured_total{"):
                    count = float(line.rsplit(" ", 1)[1])
                elif line.startswith("engagement_frames_dropped_total{"):
                    seen["dropped"][line.split("}")[0] + "}"] = line.rsplit(" ", 1)[1]
            return count

        seen: dict[str, dict[str, str]] = {"dropped": {}}

        def enough() -> float:
            n = captured()
            return n if n >= KILL_AFTER_FRAMES else 0.0

        try:
            frames = wait_until(f"{KILL_AFTER_FRAMES} frames captured", enough, TIMEOUTS["kill"], every=0.5)
        except CheckFailed as exc:  # the capture's own drop counters say where its frames went
            raise CheckFailed(f"{exc}; capture dropped: {seen['dropped'] or 'none counted'}") from None
        if frames >= state["frames"]:
            raise CheckFailed(f"the class was over ({frames:.0f} frames) before the kill")
        before = stack.containers()["capture"]
        os.kill(before["State"]["Pid"], signal.SIGKILL)  # a crash, as the engine sees one: not `podman stop`
        after = wait_until("capture restarted by its policy", lambda: (
            (c := stack.containers().get("capture")) and c["State"].get("Running")
            and c["State"]["Pid"] != before["State"]["Pid"] and c), TIMEOUTS["kill"])
        if after["Id"] != before["Id"]:
            raise CheckFailed("a new container, not the same one restarted")
        return (f"SIGKILL after {frames:.0f} frames; restart policy "
                f"{after['HostConfig']['RestartPolicy']['Name']} restarted the same container "
                f"(restarts {after.get('RestartCount', '?')})")

    def report_in_volume() -> str:
        folder = stack.volume_path("reports")
        found = wait_until("a report in the reports volume", lambda: reports(folder), TIMEOUTS["report"])
        time.sleep(10)  # a second report (a split class) would land by now
        found = reports(folder)
        if len(found) != 1:
            raise CheckFailed(f"{len(found)} reports, one class: sessions {sorted(found)}")
        (session, report), = found.items()
        state["report"] = report
        frames = report.get("totals", {}).get("frames")
        if frames != state["frames"]:
            raise CheckFailed(f"session {session}: the report counts {frames} frames, the video has {state['frames']} "
                              f"(dropped in the class, from Prometheus: {class_drops(prometheus_port)}; each stage's "
                              f"counters now: {frame_figures(stack)})")
        return f"one report, session {session}, {frames} frames = the video's, in volume {PROJECT}_reports"

    def prometheus_targets() -> str:
        services = state["services"]

        def targets() -> tuple[list, list]:
            code, body = http(f"http://127.0.0.1:{prometheus_port}/api/v1/targets")
            if code != 200:
                return [], []
            active = json.loads(body)["data"]["activeTargets"]
            started = [t for t in active if t["labels"]["instance"].split(":")[0] in (*services, "127.0.0.1")]
            skipped = [t["labels"]["instance"] for t in active if t not in started]
            return started, skipped

        def all_up() -> bool:
            started, _ = targets()
            return bool(started) and all(t["health"] == "up" for t in started)

        try:
            wait_until("every target up", all_up, TIMEOUTS["targets"], every=2.0)
        except CheckFailed:
            started, _ = targets()
            down = [f"{t['labels']['instance']} ({t['lastError']})" for t in started if t["health"] != "up"]
            raise CheckFailed(f"targets down: {down}") from None
        started, skipped = targets()

        # The exporter's target is up even when Redis refuses it: redis_up says it logged in with the
        # password of its secret file.
        def redis_up() -> bool:
            code, body = http(f"http://127.0.0.1:{prometheus_port}/api/v1/query?query=redis_up")
            found = json.loads(body)["data"]["result"] if code == 200 else []
            return bool(found) and all(r["value"][1] == "1" for r in found)

        wait_until("redis_up 1 (the exporter logged in to Redis)", redis_up, TIMEOUTS["targets"], every=2.0)
        return (f"{len(started)} targets up, redis_up 1; not started here: {', '.join(skipped) or 'none'}"
                f" (mqtt-bridge is profile cloud)")

    def web_page() -> str:
        url = f"http://127.0.0.1:{web_port}/"
        with_token, page = http(url, token)
        without, _ = http(url)
        wrong, _ = http(url, "0" * 48)
        if with_token != 200 or without != 401 or wrong != 401:
            raise CheckFailed(f"with the token {with_token}, without {without}, a wrong one {wrong}")
        # The secrets came as files (compose `secrets:`): none is in any container's environment.
        passwords = [(secret_dir / n).read_text().strip() for n in ("redis_password", "web_token")]
        leaked = [service for service, c in stack.containers().items()
                  if any(p in "\n".join(c["Config"].get("Env") or []) for p in passwords)]
        if leaked:
            raise CheckFailed(f"a secret is in the environment of {leaked}")
        mounted = stack.containers()["web"]["Mounts"]
        files = sorted(m["Destination"] for m in mounted if m["Destination"].startswith("/run/secrets/"))
        return (f"{url}: 200 with the token ({len(page)} bytes), 401 without or with a wrong one; the token and "
                f"the Redis password in no container's environment (web reads {', '.join(files)})")

    def down_leaves_nothing() -> str:
        ticker.stop.set()
        if ticker.is_alive():
            ticker.join(60)  # no health check runs against a container being removed
        ticker.pool.shutdown()
        stack.podman_compose("down", "-v", "--remove-orphans", timeout=300)
        left = stack.leftovers()
        if left:
            raise CheckFailed(f"left behind: {', '.join(left)}")
        return "no container, volume or network of the project"

    total = time.monotonic()
    try:
        steps = [("nothing left from an earlier run", leftover_from_an_earlier_run),
                 ("a class's video with real faces", sample_video),
                 ("every service healthy", every_service_healthy),
                 ("a pipeline container killed mid-class is restarted by its policy", capture_killed_mid_class),
                 ("the class is one report, in the data volume, with the video's frame count", report_in_volume),
                 ("Prometheus reports every target up", prometheus_targets),
                 ("the web page answers with its token and refuses without", web_page)]
        for name, body in steps:
            if not checks.run(name, body):
                diagnose(stack)
                break
    finally:
        checks.run("down -v leaves nothing", down_leaves_nothing)
        shutil.rmtree(media, ignore_errors=True)
        shutil.rmtree(secret_dir.parent, ignore_errors=True)
    for line in checks.lines:  # CI shows the end of the output: the failures again, after the diagnosis
        if line.startswith("FAIL"):
            log(line)
    log(f"checks took {time.monotonic() - total:.0f} s")
    log(f"{len(checks.lines) - len(checks.failed)} passed, {len(checks.failed)} failed")  # CI reads this line
    return 1 if checks.failed else 0


def diagnose(stack: Stack) -> None:
    """What a failed check leaves to read: each container's state and its last log lines."""
    try:
        for service, c in sorted(stack.containers().items()):
            health = stack.health(service)
            log(f"  {service}: {health}")
            # A healthy container can be the one that failed the check (a pipeline that takes no
            # frames): every container's last lines, more of those that are not healthy.
            lines = "8" if health in ("healthy", "running") else "15"
            tail = subprocess.run(["podman", "logs", "--tail", lines, c["Id"]], capture_output=True, text=True)
            for line in (tail.stdout + tail.stderr).splitlines():
                log(f"    | {line}")
    except (CheckFailed, OSError, subprocess.SubprocessError) as exc:
        log(f"  (no diagnosis: {exc})")


if __name__ == "__main__":
    sys.exit(main())
