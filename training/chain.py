"""The training chain's runner (k8s/base/job-chain.yaml): starts each step's Job once the one before
it has completed, and stops the chain at a failed step.

    python -m training.chain            in the cluster, as the `chain` Job (the train image)

Steps after the first are created suspended (no pod, so no idle GPU node waiting for hours of
extraction); this un-suspends each in turn. It talks to the Kubernetes API itself, with the pod's
service-account token (RBAC: get and patch Jobs in its namespace, k8s/base/rbac.yaml), so the
chain needs no kubectl image: it runs in the project's own train image.
Exit codes: 0 the chain completed, 1 a step failed, 2 bad option or no API to talk to.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from shared.ops.command_parser import CommandParser

STEPS = ("extract", "faces", "augment", "train", "evaluate", "export")
ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")

log = logging.getLogger("chain")


class JobsApi:
    """Just the two calls the chain needs: a Job's state, and un-suspending it."""

    def __init__(self, base_url: str, namespace: str, token: str, ca_file: str | None) -> None:
        self.base = f"{base_url.rstrip('/')}/apis/batch/v1/namespaces/{namespace}/jobs"
        self.token = token
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def _call(self, name: str, method: str = "GET", body: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.base}/{name}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None)
        request.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            request.add_header("Content-Type", "application/merge-patch+json")
        with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
            return json.loads(response.read())

    def state(self, name: str) -> str:
        """complete, failed or running (also: not started yet)."""
        conditions = self._call(name).get("status", {}).get("conditions") or []
        done = {c.get("type") for c in conditions if c.get("status") == "True"}
        return "complete" if "Complete" in done else "failed" if "Failed" in done else "running"

    def start(self, name: str) -> None:
        self._call(name, "PATCH", {"spec": {"suspend": False}})


def wait_for(api: JobsApi, name: str, poll_seconds: float) -> bool:
    """True once the Job completed, False if it failed; an API that does not answer is retried."""
    while True:
        try:
            state = api.state(name)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("cannot read job %s (%s): retrying", name, exc)
            state = "running"
        if state != "running":
            return state == "complete"
        time.sleep(poll_seconds)


def start(api: JobsApi, name: str, poll_seconds: float) -> bool:
    """Un-suspend the Job; an API that does not answer is retried, one that refuses stops the chain."""
    while True:
        try:
            api.start(name)
            return True
        except urllib.error.HTTPError as exc:
            print(f"cannot start step {name}: the API answered {exc.code} {exc.reason}: chain stopped", flush=True)
            return False
        except (urllib.error.URLError, OSError) as exc:
            log.warning("cannot start job %s (%s): retrying", name, exc)
            time.sleep(poll_seconds)


def run_chain(api: JobsApi, poll_seconds: float, steps: tuple[str, ...] = STEPS) -> int:
    for before, after in zip(steps, steps[1:], strict=False):  # pairs: one fewer than steps
        if not wait_for(api, before, poll_seconds):
            print(f"step {before} failed: chain stopped", flush=True)
            return 1
        print(f"step {before} completed: starting {after}", flush=True)
        if not start(api, after, poll_seconds):
            return 1
    if not wait_for(api, steps[-1], poll_seconds):
        print(f"step {steps[-1]} failed: chain stopped", flush=True)
        return 1
    print(f"chain completed: the bundle is in {os.environ.get('BUNDLES_DIR', '')}/{os.environ.get('RUN_NAME', '')}",
          flush=True)
    return 0


def in_cluster_url() -> str:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://{host}:{port}" if host else ""


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m training.chain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default=in_cluster_url(), help="API server URL (default: the cluster's own)")
    parser.add_argument("--account", default=str(ACCOUNT),
                        help="folder with the service account's token, ca.crt and namespace")
    parser.add_argument("--poll-seconds", type=float, default=30.0, help="how often each step's Job is read")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chain %(levelname)s %(message)s")
    account = Path(args.account)
    if not args.api:
        print("no Kubernetes API: run in the cluster (KUBERNETES_SERVICE_HOST) or give --api", file=sys.stderr)
        return 2
    try:
        token = (account / "token").read_text().strip()
        namespace = (account / "namespace").read_text().strip()
    except OSError as exc:
        print(f"no service account token in {account}: {exc}", file=sys.stderr)
        return 2
    ca = account / "ca.crt"
    api = JobsApi(args.api, namespace, token, str(ca) if ca.exists() else None)
    return run_chain(api, args.poll_seconds)


if __name__ == "__main__":
    sys.exit(main())
