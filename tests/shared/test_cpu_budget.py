"""The CPU budget reaches real service processes: affinity, OpenCV and TensorFlow threads.

Each check runs in a process of its own (affinity and thread pools are per process), read
back from the kernel (/proc) and the libraries themselves, not from our own bookkeeping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.ops.config import load_settings
from shared.ops.cpu_budget import BadAffinity, parse_cpus, resolve
from shared.ops.service import EXIT_GAVE_UP
from tests.support.links import link

ENGAGEMENT = str(Path(sys.executable).with_name("engagement"))


def test_parse_cpus():
    assert parse_cpus("0") == {0}
    assert parse_cpus("0-2,5") == {0, 1, 2, 5}
    for bad in ("a", "2-1", "-1", "0-x"):
        with pytest.raises(BadAffinity, match="CPU_AFFINITY"):
            parse_cpus(bad)


def test_each_service_takes_its_budget_from_the_table_unless_told():
    keys = ("CV_THREADS", "LITERT_THREADS", "TF_INTRA_OP_THREADS", "TF_INTER_OP_THREADS")

    def budget(service, argv=(), env=None):
        s = load_settings(service, list(argv), env=env or {})
        return resolve(service, {k: getattr(s, k.lower()) for k in keys}), s.cpu_affinity

    assert budget("facedetect") == ({"CV_THREADS": 1, "LITERT_THREADS": 1, "TF_INTRA_OP_THREADS": 0,
                                     "TF_INTER_OP_THREADS": 0}, "")
    inf, cpus = budget("inference", ["--tf-intra-op-threads", "2", "--cv-threads", "-1"], {"CPU_AFFINITY": "0"})
    assert (inf["TF_INTRA_OP_THREADS"], inf["TF_INTER_OP_THREADS"], inf["CV_THREADS"], cpus) == (2, 1, 0, "0")


BUDGET_PROBE = """
import os, sys, cv2
from shared.ops import cpu_budget
cpu_budget.apply(**eval(sys.argv[1]))
import tensorflow as tf
_ = tf.linalg.matmul(tf.ones((256, 256)), tf.ones((256, 256))).numpy()  # TensorFlow sizes its pools here
print(",".join(map(str, sorted(os.sched_getaffinity(0)))), cv2.getNumThreads(), cpu_budget.litert_threads(),
      len(os.listdir("/proc/self/task")))
"""


def _probe(budget: dict) -> list[str]:
    out = subprocess.run([sys.executable, "-c", BUDGET_PROBE, repr(budget)], capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.split()


def test_apply_sets_opencv_litert_tensorflow_and_affinity_in_its_process():
    everything = _probe({})
    budgeted = _probe({"cv_threads": 1, "litert": 2, "tf_intra": 1, "tf_inter": 1, "affinity": "0"})
    assert budgeted[:3] == ["0", "1", "2"]
    # TensorFlow's pools shrink (the kernel's count of the process's threads).
    assert int(budgeted[-1]) < int(everything[-1]), (budgeted, everything)


def test_a_service_process_runs_inside_its_budget():
    _, frames_in, _ = link("frames")
    faces_out, _, _ = link("faces")
    env = dict(os.environ, CPU_AFFINITY="0", CV_THREADS="1", FRAMES_IN=frames_in, FACES_OUT=faces_out,
               METRICS_PORT="0")
    proc = subprocess.Popen([ENGAGEMENT, "facedetect"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        allowed = ""
        while time.monotonic() < deadline and proc.poll() is None:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            allowed = next(line.split()[1] for line in status.splitlines() if line.startswith("Cpus_allowed_list"))
            if allowed == "0":
                break
            time.sleep(0.2)
        assert allowed == "0"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "cpu budget: {'cpus': [0], 'opencv': 1, 'litert': 1}" in out, out


def test_an_impossible_affinity_is_one_clear_line_and_no_restart():
    env = dict(os.environ, CPU_AFFINITY="4096", METRICS_PORT="0")
    out = subprocess.run([ENGAGEMENT, "sequencer"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == EXIT_GAVE_UP  # the launcher does not restart it: it would fail the same way
    assert "refusing to start: CPU_AFFINITY '4096': none of these CPUs is available" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
