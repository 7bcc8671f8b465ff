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

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from services.inference.baseline.reframe import run_reframed
from services.inference.preprocess import resize_crops
from shared.ops import cpu_budget
from shared.ops.config import MESH_POOL_MIN_FACES
from shared.vision.face_mesh import MESH_SIZE, FaceMesh, MeshResult

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
        MESH_POOL_MIN_FACES faces, else in contiguous parts, one a worker, put back in order."""
        if self._helpers is None or len(crops) < self.min_faces:
            return _measured(self.meshes[0], crops, min_confidence)
        bounds = np.linspace(0, len(crops), self.workers + 1).astype(int)
        later: list[Future[Measured]] = [
            self._helpers.submit(_measured, self.meshes[i], crops[bounds[i]:bounds[i + 1]], min_confidence)
            for i in range(1, self.workers)]
        results = [_measured(self.meshes[0], crops[:bounds[1]], min_confidence)]
        results += [future.result() for future in later]
        return (np.concatenate([resized for resized, _, _ in results]),
                _joined([first for _, first, _ in results]), _joined([second for _, _, second in results]))

    def close(self) -> None:
        if self._helpers is not None:
            self._helpers.shutdown(wait=True)


def _measured(mesh: FaceMesh, crops: np.ndarray, min_confidence: float) -> Measured:
    resized = resize_crops(crops, (MESH_SIZE, MESH_SIZE))
    return (resized, *run_reframed(mesh, resized, min_confidence))


def _joined(results: list[MeshResult]) -> MeshResult:
    return MeshResult(np.concatenate([r.points for r in results]), np.concatenate([r.confidence for r in results]))
