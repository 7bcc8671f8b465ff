"""A real Prometheus server scrapes running services, and the inference latency histogram is
read back through Prometheus's HTTP API (issue 5, item 7).

- lean: the inference service alone, fed real face crops over real ZeroMQ sockets: Prometheus
  must report exactly as many model calls as batches were sent, in the service's buckets.
- pipeline: `engagement run` on a real video (paced in real time so several scrapes happen),
  Prometheus discovering the services' metrics ports from the launcher's log; the inference and
  end-to-end latency histograms come back through the API, and every metric the Grafana
  dashboard queries is announced by a running service's /metrics.
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
import zmq

from shared.bus.messages import decode, encode, make_header
from shared.bus.metrics import LATENCY_BUCKETS
from shared.ops.config import REPO_ROOT
from tests.deploy.prometheus_server import PrometheusServer, free_port
from tests.deploy.tools import dashboard_exprs, exposed_names, metric_names
from tests.support.env import REDIS_URL

CROP = 96
BATCHES = 4


@pytest.fixture
def prometheus(tmp_path):
    server = PrometheusServer(tmp_path).start()
    yield server
    server.stop()


def healthy(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
    except OSError:
        return False


def check_histogram(prometheus: PrometheusServer, name: str, selector: str, at: float) -> float:
    """The histogram's series at one evaluation time: the service's buckets, cumulative, +Inf == count."""
    buckets = prometheus.query(f"sum by (le) ({name}_bucket{selector})", at)
    [count] = prometheus.query(f"sum({name}_count{selector})", at)
    by_le = {float(s["metric"]["le"]): float(s["value"][1]) for s in buckets}
    assert sorted(by_le) == [*LATENCY_BUCKETS, math.inf]
    counts = [by_le[le] for le in sorted(by_le)]
    assert counts == sorted(counts), "buckets are cumulative"
    assert by_le[math.inf] == float(count["value"][1]) > 0
    return float(count["value"][1])


def _batch(seq: int, crops: list[np.ndarray]) -> list[bytes]:
    students = [{"student": i + 1, "box": [60 * i, 20, 50, 60], "conf": 0.99} for i in range(len(crops))]
    header = make_header("batch", "prometheus-test", "cam0", seq, time.time(), crop=CROP, length=1,
                         students=students, faces=students, t_media=seq * 0.5)
    return encode(header, b"".join(np.ascontiguousarray(c).tobytes() for c in crops))


def test_prometheus_reads_back_the_inference_latency_of_the_inference_service(prometheus, tmp_path):
    from tests.inference.faces import astronaut_crop

    face = cv2.resize(astronaut_crop(), (CROP, CROP), interpolation=cv2.INTER_AREA)
    ctx = zmq.Context.instance()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    for s in (push, pull):
        s.setsockopt(zmq.LINGER, 0)
    in_port, out_port = push.bind_to_random_port("tcp://127.0.0.1"), pull.bind_to_random_port("tcp://127.0.0.1")
    metrics_port = free_port()
    log = (tmp_path / "inference.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engagement.cli", "inference", "--model", "baseline",
         "--batches-in", f"pull+connect:tcp://127.0.0.1:{in_port}",
         "--predictions-out", f"push+connect:tcp://127.0.0.1:{out_port}", "--metrics-port", str(metrics_port)],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        prometheus.set_targets({"inference": metrics_port})
        deadline = time.monotonic() + 120
        while not healthy(metrics_port):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "inference.log").read_text()
            time.sleep(0.2)
        for seq in range(1, BATCHES + 1):
            push.send_multipart(_batch(seq, [face, face]))
            assert pull.poll(60_000), "inference sent no predictions"
            assert decode(pull.recv_multipart()).kind == "predictions"
        # Every batch was answered, so the next scrape holds all model calls.
        _, at = prometheus.wait_for(f"engagement_inference_seconds_count >= {BATCHES}", timeout=60,
                                    alive=lambda: proc.poll() is None)
        assert check_histogram(prometheus, "engagement_inference_seconds", "", at) == BATCHES
        [median] = prometheus.query("histogram_quantile(0.5, sum by (le) (engagement_inference_seconds_bucket))", at)
        assert 0 < float(median["value"][1]) <= LATENCY_BUCKETS[-1]
        [target] = prometheus.api("targets")["activeTargets"]
        assert target["health"] == "up" and target["labels"]["target"] == "inference"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        push.close()
        pull.close()


NOT_LAUNCHED = "engagement_mqtt_bridge_"  # the launcher does not run the bridge (compose profile cloud)
PORTS_LINE = re.compile(r"metrics ports (\{.*\})")


class LauncherLog:
    """Reads the launcher's log as it comes, and picks up the metrics ports it announces."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        self.announced = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)
            match = PORTS_LINE.search(line)
            if match and not self.announced.is_set():
                self.ports = ast.literal_eval(match.group(1))
                self.announced.set()

    def tail(self) -> str:
        return "".join(self.lines[-40:])


def test_prometheus_scrapes_the_running_pipeline(prometheus, tmp_path):
    from tools.sample_video import make_sample_video

    video = make_sample_video(tmp_path / "sample.avi", seconds=8.0, faces=1)
    cmd = [sys.executable, "-m", "engagement.cli", "run", "--source", str(video["path"]),
           "--report-dir", str(tmp_path / "reports"), "--redis-url", REDIS_URL,
           "--session-id", f"prometheus-{os.getpid()}-{time.time_ns()}"]
    # Paced in real time (2 frames a second of video) so Prometheus scrapes the pipeline at work.
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, "REALTIME": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = LauncherLog(proc)
    try:
        assert log.announced.wait(180), f"the launcher never announced its metrics ports:\n{log.tail()}"
        ports = log.ports
        assert set(ports) >= {"capture", "facedetect", "inference", "aggregator", "reporter"}  # baseline: no sequencer
        prometheus.set_targets(ports)

        # Every metric the Grafana dashboard queries is announced by a running service.
        exposed = set()
        for port in ports.values():
            exposed |= exposed_names(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                                     .read().decode())
        wanted = set().union(*(metric_names(e) for e in dashboard_exprs()))
        wanted = {m for m in wanted if not m.startswith(NOT_LAUNCHED)}
        assert wanted - exposed == set(), "dashboard metrics no running service exports"

        # Inference latency and end-to-end latency, read back through Prometheus's HTTP API.
        alive = lambda: proc.poll() is None  # noqa: E731
        prometheus.wait_for('sum(engagement_inference_seconds_count) > 0', timeout=120, alive=alive)
        _, at = prometheus.wait_for('sum(engagement_latency_seconds_count{service="aggregator"}) > 0',
                                    timeout=120, alive=alive)
        calls = check_histogram(prometheus, "engagement_inference_seconds", "", at)
        arrived = check_histogram(prometheus, "engagement_latency_seconds", '{service="aggregator"}', at)
        [p95] = prometheus.query('histogram_quantile(0.95, sum by (le) (engagement_latency_seconds_bucket'
                                 '{service="aggregator"}))', at)
        print(f"via Prometheus: {calls:.0f} model calls, {arrived:.0f} frames at the aggregator, "
              f"end-to-end p95 ~ {float(p95['value'][1]) * 1000:.0f} ms (estimated from the buckets)")
        # Prometheus spreads first scrapes over the interval: wait until every target has had one.
        _, at_up = prometheus.wait_for(f"count(up == 1) >= {len(ports)}", timeout=60, alive=alive)
        up = prometheus.query("up", at_up)
        assert {s["metric"]["target"] for s in up} == set(ports)
        assert all(s["value"][1] == "1" for s in up), up
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.tail()
    assert [line for line in out.splitlines() if line.startswith("report: ")], out
