"""The baseline on one face-mesh interpreter and on the service's pool of them, timed in turn (printed).

    python -m tests.inference.measure_mesh_pool [--rounds 3]

The predictor is built as the inference service builds it (its CPU budget applied first, CPU_BUDGETS),
once with one interpreter and once with the budget's (services/inference/baseline/mesh_pool.py);
each round times both, in turn (A, B), on a 7x7 1920x1080 gallery frame's 49 real faces and on one
real face: per predict_students call, the median wall time and the mean CPU time of the process
(every thread), with the load average beside them. Figures only mean something on a quiet box.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from services.inference.baseline import BaselinePredictor
from shared.ops import cpu_budget
from tests.inference.faces import astronaut_crop
from tests.inference.gallery_crops import gallery_crops


def timed(predictor: BaselinePredictor, crops: np.ndarray, calls: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) of a predict_students call on these (n, 1, h, w, 3) crops."""
    keys = [("measure", "mesh-pool", i + 1) for i in range(len(crops))]
    for i in range(3):
        predictor.predict_students(keys, crops, i * 0.5)
    walls, cpus = [], []
    for i in range(calls):
        wall, cpu = time.perf_counter(), time.process_time()
        predictor.predict_students(keys, crops, 10.0 + i * 0.5)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return 1e3 * float(np.median(walls)), 1e3 * float(np.mean(cpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    budget = cpu_budget.resolve("inference", {"CV_THREADS": 0, "LITERT_THREADS": 0})
    cpu_budget.apply(budget["CV_THREADS"], budget["LITERT_THREADS"])
    predictors = {"one interpreter": BaselinePredictor(mesh_workers=1), "pool": BaselinePredictor()}
    cases = {"49 faces": (gallery_crops(7)[:, None], 20), "1 face": (astronaut_crop()[None, None], 300)}
    for round_ in range(1, rounds + 1):
        for case, (crops, calls) in cases.items():
            for name, predictor in predictors.items():
                wall, cpu = timed(predictor, crops, calls)
                load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
                print(f"round {round_} {case:8s} {name:15s} ({predictor.meshes.workers} interpreter(s)): "
                      f"wall {wall:7.1f} ms, CPU {cpu:7.1f} ms a frame  (load {load})", flush=True)


if __name__ == "__main__":
    main()
