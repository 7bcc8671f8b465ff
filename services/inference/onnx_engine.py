"""ONNX Runtime on a bundle's model.onnx: TensorRT, else CUDA, else the CPU, as this machine allows.

No TensorFlow: this is how a trained bundle runs on the Jetson's GPU (the inference image there
has onnxruntime-gpu from NVIDIA's JetPack 6 wheels, no TensorFlow). The exported graph names its
outputs after the card's heads (training/onnx_export.py), so outputs are matched by name.

TensorRT builds an engine for the device the first time a model runs (minutes on a Jetson);
it is cached under TRT_CACHE_DIR so the next start reuses it (TrtOptions).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.ops import cpu_budget
from shared.ops.config import user_cache_dir

# In order of preference; ONNX Runtime hands each node to the first provider that takes it.
PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
DEVICES = {"TensorrtExecutionProvider": "tensorrt", "CUDAExecutionProvider": "cuda", "CPUExecutionProvider": "cpu"}


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def available_providers() -> list[str]:
    """The providers of PROVIDERS that this machine's onnxruntime build offers, best first."""
    if not onnxruntime_installed():
        return []
    import onnxruntime as ort  # noqa: PLC0415

    offered = set(ort.get_available_providers())
    return [p for p in PROVIDERS if p in offered]


@dataclass(frozen=True)
class TrtOptions:
    """The TensorRT provider's settings (TRT_CACHE_DIR, TRT_FP16 in shared/ops/config.py)."""

    cache_dir: str = ""  # "" = ~/.cache/engagement/tensorrt
    fp16: bool = True  # halves the Jetson's memory traffic; auto still checks agreement with Keras

    def cache_path(self) -> Path:
        default = user_cache_dir() / "engagement" / "tensorrt"
        return Path(self.cache_dir) if self.cache_dir else default


# Faces per call the TensorRT engine is built for: one engine covers 1..MAX (a class), tuned for OPT.
# Without a profile TensorRT builds a new engine for every new number of faces (minutes on a Jetson).
TRT_BATCH = {"min": 1, "opt": 8, "max": 32}


def trt_profile(path: Path) -> dict[str, str]:
    """TensorRT optimisation-profile options for the model's input, batch TRT_BATCH, the rest as exported."""
    import onnxruntime as ort  # noqa: PLC0415

    (inp,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()
    rest = "x".join(str(d) for d in inp.shape[1:])
    return {f"trt_profile_{k}_shapes": f"{inp.name}:{n}x{rest}" for k, n in TRT_BATCH.items()}


def _options(provider: str, trt: TrtOptions, path: Path | None = None) -> dict[str, Any]:
    if provider == "TensorrtExecutionProvider":
        cache = trt.cache_path()
        cache.mkdir(parents=True, exist_ok=True)
        return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache), "trt_fp16_enable": trt.fp16,
                **(trt_profile(path) if path else {})}
    return {}


class OnnxEngine:
    name = "onnx"

    def __init__(self, path: Path, providers: Sequence[str] | None = None, num_threads: int | None = None,
                 trt: TrtOptions | None = None) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        wanted = [p for p in (providers or PROVIDERS) if p in available_providers()]
        if not wanted:
            raise ValueError(f"none of the providers {list(providers or PROVIDERS)} is in this onnxruntime "
                             f"({ort.get_available_providers()})")
        options = ort.SessionOptions()
        # Every core unless the service's budget (ORT_THREADS) says otherwise.
        options.intra_op_num_threads = num_threads or cpu_budget.ort_threads(os.cpu_count() or 1)
        options.log_severity_level = 3  # errors only: ORT warns about every node it leaves on the CPU
        # Its threads would otherwise spin between the parallel parts of a call: on a small box
        # shared with the other stages a spinning thread holds the core the others need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        settings = [(p, _options(p, trt or TrtOptions(), Path(path))) for p in wanted]
        self.session = ort.InferenceSession(str(path), options, providers=settings)
        # The providers really in use (a GPU provider whose libraries are missing drops out here).
        self.provider = self.session.get_providers()[0]
        self.device = DEVICES.get(self.provider, self.provider)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"the ONNX model has {len(inputs)} inputs; one is expected")
        self._input = inputs[0]
        self._outputs = self.session.get_outputs()
        self.order = list(range(len(self._outputs)))

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        return tuple(d if isinstance(d, int) else None for d in self._input.shape[1:])

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self._outputs]

    @property
    def output_shapes(self) -> list[tuple[int | None, ...]]:
        return [tuple(d if isinstance(d, int) else None for d in o.shape[1:]) for o in self._outputs]

    def use_heads(self, heads: list[str]) -> None:
        """Outputs in the order of the card's heads when the graph names them so (export does)."""
        names = self.output_names
        if sorted(names) == sorted(heads):
            self.order = [names.index(h) for h in heads]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.session.run(None, {self._input.name: np.ascontiguousarray(x, np.float32)})
        return [outs[i] for i in self.order]
