"""A CPU budget per service process: how many threads each library may use, and which cores.

On a small box every library sizes its thread pool to every core (OpenCV, LiteRT,
TensorFlow's intra- and inter-op pools), so six stages each running "in parallel" fight for
the same cores and a model call stretches to several times its length. The budget
(CV_THREADS, LITERT_THREADS, ORT_THREADS, TF_INTRA_OP_THREADS, TF_INTER_OP_THREADS, CPU_AFFINITY; each
service's own figures in shared/ops/config.py's CPU_BUDGETS) lets the stages overlap instead. `apply` runs once at a
service's start, before any model loads; 0 (or empty) leaves a library's own default.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from shared.ops.settings import CommonSettings

log = logging.getLogger(__name__)

_litert_threads = 0  # set by apply(); read by whoever builds a LiteRT interpreter
_ort_threads = 0  # set by apply(); read by whoever builds an ONNX Runtime session


class BadAffinity(ValueError):
    pass


def parse_cpus(spec: str) -> set[int]:
    """'0', '0,2', '0-1' or '0-1,3' -> the set of CPU numbers."""
    cpus: set[int] = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError as exc:
            raise BadAffinity(f"CPU_AFFINITY {spec!r}: {part!r} is not a CPU number or range") from exc
        if first < 0 or last < first:
            raise BadAffinity(f"CPU_AFFINITY {spec!r}: {part!r} is not a valid range")
        cpus.update(range(first, last + 1))
    return cpus


def litert_threads(default: int = 1) -> int:
    """Threads for a LiteRT interpreter of this process (its budget, else `default`)."""
    return _litert_threads or default


def ort_threads(default: int = 1) -> int:
    """Threads of an ONNX Runtime session's intra-op pool in this process (its budget, else `default`)."""
    return _ort_threads or default


def apply(cv_threads: int = 0, litert: int = 0, tf_intra: int = 0, tf_inter: int = 0, affinity: str = "",
          ort: int = 0) -> dict[str, Any]:
    """Apply the budget to this process; returns what was applied (for the start-up log line)."""
    global _litert_threads, _ort_threads
    applied: dict[str, Any] = {}
    if affinity:
        cpus = parse_cpus(affinity)
        available = os.sched_getaffinity(0)
        usable = cpus & available
        if not usable:
            raise BadAffinity(f"CPU_AFFINITY {affinity!r}: none of these CPUs is available "
                              f"(this machine has {sorted(available)})")
        os.sched_setaffinity(0, usable)
        applied["cpus"] = sorted(usable)
    if cv_threads > 0:
        import cv2

        cv2.setNumThreads(cv_threads)
        applied["opencv"] = cv_threads
    if litert > 0:
        _litert_threads = litert
        applied["litert"] = litert
    if ort > 0:
        _ort_threads = ort
        applied["onnxruntime"] = ort
    # TensorFlow reads these when it creates its thread pools (the first op); set them before
    # it is imported, and through its API when it already is.
    for env, value, setter in (("TF_NUM_INTRAOP_THREADS", tf_intra, "set_intra_op_parallelism_threads"),
                               ("TF_NUM_INTEROP_THREADS", tf_inter, "set_inter_op_parallelism_threads")):
        if value > 0:
            os.environ[env] = str(value)
            applied[env.lower()] = value
            tf = sys.modules.get("tensorflow")
            if tf is not None:
                try:
                    getattr(tf.config.threading, setter)(value)
                except RuntimeError:  # already initialised: the environment variable is what counts
                    log.warning("TensorFlow was initialised before the CPU budget: %s=%d may not apply", env, value)
    return applied


def resolve(service: str, values: dict[str, int]) -> dict[str, int]:
    """Thread counts of a service: a setting left at 0 takes the service's CPU_BUDGETS entry,
    -1 (or no entry) the library's own default (reported as 0 here)."""
    from shared.ops.config import CPU_BUDGETS

    table = CPU_BUDGETS.get(service, {})
    out = {}
    for env, value in values.items():
        chosen = table.get(env, -1) if value == 0 else value
        out[env] = max(0, chosen)
    return out


def small_box_affinity(cpus: int | None = None) -> dict[str, str]:
    """CPU_AFFINITY per service for a trained model on a machine of at most SMALL_BOX_CPUS cores, else {}."""
    from shared.ops.config import SMALL_BOX_AFFINITY, SMALL_BOX_CPUS

    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0))
    return dict(SMALL_BOX_AFFINITY) if cpus <= SMALL_BOX_CPUS else {}


def apply_settings(settings: CommonSettings) -> dict[str, Any]:
    """apply() from a service's settings and its CPU_BUDGETS entry."""
    given = {"CV_THREADS": settings.cv_threads, "LITERT_THREADS": settings.litert_threads,
             "ORT_THREADS": settings.ort_threads, "TF_INTRA_OP_THREADS": settings.tf_intra_op_threads,
             "TF_INTER_OP_THREADS": settings.tf_inter_op_threads}
    n = resolve(settings.service, given)
    return apply(n["CV_THREADS"], n["LITERT_THREADS"], n["TF_INTRA_OP_THREADS"], n["TF_INTER_OP_THREADS"],
                 settings.cpu_affinity, n["ORT_THREADS"])
