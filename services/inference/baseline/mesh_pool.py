"""The face mesh of a frame's faces over a few workers, each with its own one-thread interpreter.

A gallery frame has up to 49 faces, each run through the mesh twice (reframe.py): about 3 ms of
CPU a face, on one core, while the box has another. A second intra-op thread per interpreter
costs more CPU than it saves (MESH_THREADS in predictor.py), but faces are independent: split
over interpreters of one thread each, they run side by side (LiteRT's invoke and OpenCV's resize
and warp release the GIL), each face computed exactly as on one thread.

The workers are the service's LiteRT budget (LITERT_THREADS, CPU_BUDGETS in shared/ops/config.py),
at most the CPUs this process may use; the calling thread is one of them. Frames of fewer than
MESH_POOL_MIN_FACES faces stay on the calling thread: handing them over costs more than it saves.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from services.inference.baseline.reframe import run_reframed
from services.inference.preprocess import resize_crops
from shared.ops import cpu_budget
from shared.ops.config import MESH_POOL_MIN_FACES
from shared.vision.face_mesh import MESH_POINTS, MESH_SIZE, FaceMesh, MeshResult

# (the crops at MESH_SIZE, the first pass, the reframed pass): run_reframed's, with its input
Measured = tuple[np.ndarray, MeshResult, MeshResult]


def pool_size() -> int:
    """Workers for this process: its LiteRT budget (1 when none is set), at most its usable CPUs."""
    return max(1, min(cpu_budget.litert_threads(1), len(os.sched_getaffinity(0))))


class MeshPool:
    """`meshes`: one per worker (the first runs on the calling thread), each built with one thread."""

    def __init__(self, meshes: list[FaceMesh], min_faces: int = MESH_POOL_MIN_FACES) -> None:
        if not meshes:
            raise ValueError("a mesh pool needs at least one face mesh")
        self.meshes = meshes
        self.min_faces = max(1, min_faces)
        self._helpers = (ThreadPoolExecutor(len(meshes) - 1, thread_name_prefix="mesh")
                         if len(meshes) > 1 else None)

    @classmethod
    def build(cls, make_mesh: Callable[[], FaceMesh], workers: int | None = None,
              min_faces: int = MESH_POOL_MIN_FACES) -> MeshPool:
        return cls([make_mesh() for _ in range(workers or pool_size())], min_faces)

    @property
    def workers(self) -> int:
        return len(self.meshes)

    def run(self, crops: np.ndarray, min_confidence: float) -> Measured:
        """Crops (n, h, w, 3) resized to MESH_SIZE and run_reframed: on the calling thread under
        MESH_POOL_MIN_FACES faces, else face by face by whichever worker is free, in their places.

        Faces are taken one at a time rather than in fixed shares: on a busy box one worker can be
        held off its core for a while, and a fixed half would keep the frame waiting for it."""
        if self._helpers is None or len(crops) < self.min_faces:
            return _measured(self.meshes[0], crops, min_confidence)
        n = len(crops)
        resized = np.empty((n, MESH_SIZE, MESH_SIZE, 3), np.uint8)
        first, second = _empty(n), _empty(n)
        turns = itertools.count()  # next() is atomic under the GIL: each face is taken once

        def work(mesh: FaceMesh) -> None:
            while (i := next(turns)) < n:
                resized[i], (first.points[i], first.confidence[i]), (second.points[i], second.confidence[i]) = (
                    _one(_measured(mesh, crops[i:i + 1], min_confidence)))

        later = [self._helpers.submit(work, mesh) for mesh in self.meshes[1:]]
        work(self.meshes[0])
        for future in later:
            future.result()  # a worker's error is raised here
        return resized, first, second

    def close(self) -> None:
        if self._helpers is not None:
            self._helpers.shutdown(wait=True)


def _measured(mesh: FaceMesh, crops: np.ndarray, min_confidence: float) -> Measured:
    resized = resize_crops(crops, (MESH_SIZE, MESH_SIZE))
    return (resized, *run_reframed(mesh, resized, min_confidence))


def _empty(n: int) -> MeshResult:
    return MeshResult(np.empty((n, MESH_POINTS, 3), np.float32), np.empty(n, np.float32))


def _one(measured: Measured) -> tuple[np.ndarray, tuple[np.ndarray, float], tuple[np.ndarray, float]]:
    """The only face of a one-face Measured."""
    resized, first, second = measured
    return resized[0], (first.points[0], float(first.confidence[0])), (second.points[0], float(second.confidence[0]))
