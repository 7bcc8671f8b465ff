"""The face mesh split over workers reads every face exactly as one thread does (real gallery faces)."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from services.inference.baseline import BaselinePredictor
from services.inference.baseline.mesh_pool import MeshPool
from services.inference.baseline.reframe import run_reframed
from services.inference.preprocess import resize_crops
from shared.vision import baseline_rule as levels
from shared.vision.face_mesh import MESH_SIZE, FaceMesh, MeshResult
from tests.inference.faces import astronaut_crop
from tests.inference.gallery_crops import gallery_crops


class ThreadNoting(FaceMesh):
    """A face mesh that notes the threads it ran on; `pause`: seconds it waits first each call (a worker
    held off its core: the others must take its faces)."""

    def __init__(self, pause: float = 0.0) -> None:
        super().__init__(num_threads=1)
        self.threads: set[str] = set()
        self.calls = 0
        self.pause = pause

    def run(self, crops: np.ndarray) -> MeshResult:
        self.threads.add(threading.current_thread().name)
        self.calls += 1
        time.sleep(self.pause)
        return super().run(crops)


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """A 7x7 gallery frame's 49 real faces, the astronaut, and an empty tile (no face: the first pass's
    reading is kept), as facedetect sends them (224 x 224)."""
    gallery = gallery_crops(7)
    return np.concatenate([gallery, astronaut_crop()[None], np.full_like(gallery[:1], 40)])


def test_a_gallery_frame_split_over_workers_reads_every_face_as_one_thread(crops):
    meshes = [ThreadNoting(pause=0.02), ThreadNoting()]  # the calling thread's is slow
    pool = MeshPool(meshes, min_faces=4)
    try:
        resized, first, reframed = pool.run(crops, levels.MIN_MESH_CONFIDENCE)
    finally:
        pool.close()
    assert meshes[1].threads and meshes[1].threads != meshes[0].threads  # the second worker had a share
    assert meshes[1].calls > meshes[0].calls  # ... and took the faces the slow one could not get to
    one_thread = resize_crops(crops, (MESH_SIZE, MESH_SIZE))
    alone_first, alone = run_reframed(FaceMesh(num_threads=1), one_thread, levels.MIN_MESH_CONFIDENCE)
    assert np.array_equal(resized, one_thread)
    assert np.array_equal(first.points, alone_first.points) and np.array_equal(first.confidence,
                                                                             alone_first.confidence)
    assert np.array_equal(reframed.points, alone.points) and np.array_equal(reframed.confidence, alone.confidence)
    faces = alone.confidence >= levels.MIN_MESH_CONFIDENCE
    assert faces.sum() >= 45 and not faces[-1]  # real faces were read, the empty tile was not


def test_a_few_faces_stay_on_the_calling_thread(crops):
    meshes = [ThreadNoting(), ThreadNoting()]
    pool = MeshPool(meshes, min_faces=4)
    try:
        pool.run(crops[:3], levels.MIN_MESH_CONFIDENCE)
    finally:
        pool.close()
    assert meshes[0].threads == {threading.current_thread().name} and not meshes[1].threads


def test_the_baseline_gives_the_same_levels_and_signals_on_one_worker_and_on_two(crops):
    keys = [("class-1", "gallery", i + 1) for i in range(len(crops))]
    one, two = BaselinePredictor(mesh_workers=1), BaselinePredictor(mesh_workers=2)
    assert (one.meshes.workers, two.meshes.workers) == (1, 2)
    for t in (0.0, 0.5, 1.0):  # smoothing and neutral pose over a few frames
        assert one.predict_students(keys, crops[:, None], t) == two.predict_students(keys, crops[:, None], t)


def _mesh_as_it_was(mesh: FaceMesh, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FaceMesh.run before it wrote its input in place: a new RGB, float and scaled image a face."""
    points, confidence = [], []
    for crop in crops:
        if crop.shape[:2] != (MESH_SIZE, MESH_SIZE):
            crop = cv2.resize(crop, (MESH_SIZE, MESH_SIZE), interpolation=cv2.INTER_AREA)
        x = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        mesh.interpreter.set_tensor(mesh._input, x[None])
        mesh.interpreter.invoke()
        points.append(mesh.interpreter.get_tensor(mesh._points).reshape(-1, 3).copy())
        logit = float(mesh.interpreter.get_tensor(mesh._score).ravel()[0])
        confidence.append(1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50))))
    return np.array(points, np.float32), np.array(confidence, np.float32)


def test_the_face_mesh_written_in_place_reads_real_faces_as_the_one_that_copied(crops):
    """FaceMesh.run (no per-face allocations, input written in place) against its old reading, to the bit."""
    resized = resize_crops(crops, (MESH_SIZE, MESH_SIZE))
    mesh, old = FaceMesh(num_threads=1), FaceMesh(num_threads=1)
    for batch in (resized, resized[::-1], resized[:1], crops[:2]):  # again in place; 224 crops resized inside
        got = mesh.run(batch)
        want_points, want_confidence = _mesh_as_it_was(old, batch)
        assert np.array_equal(got.points, want_points) and np.array_equal(got.confidence, want_confidence)
