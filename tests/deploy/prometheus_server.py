"""A real Prometheus server (Debian's `prometheus` binary) for tests: a temporary config that
scrapes targets listed in a file (file_sd, so targets can be added once their ports are known),
a 1 s scrape interval, storage in a temporary folder, and the HTTP API on a free loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import tool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.targets_file = workdir / "targets.json"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        self.set_targets({})
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "engagement",
                                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}]}],
        }
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [tool("prometheus"), f"--config.file={config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited: {self.log_path.read_text()[-2000:]}"
            try:
                if urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"prometheus not ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def set_targets(self, ports: dict[str, int]) -> None:
        groups = [{"targets": [f"127.0.0.1:{port}"], "labels": {"target": name}} for name, port in ports.items()]
        partial = self.targets_file.with_suffix(".tmp")
        partial.write_text(json.dumps(groups))
        partial.replace(self.targets_file)  # atomic: Prometheus never reads half a file

    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.url}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        return self.api("query", **params)["result"]

    def wait_for(self, expr: str, timeout: float, alive: Any = None) -> tuple[list[dict], float]:
        """Poll an instant query until it returns series; returns them and the evaluation time used."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = time.time()
            result = self.query(expr, at)
            if result:
                return result, at
            if alive is not None and not alive():
                break
            time.sleep(0.5)
        raise AssertionError(f"Prometheus never returned {expr!r}; log tail: {self.log_path.read_text()[-1500:]}")
