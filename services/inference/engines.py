"""Ways to run a bundle's model on a prepared float32 batch; each returns one array per head.

keras    the model called directly inside a tf.function whose signature has a free batch
         dimension: one trace, every batch size, no per-call Python overhead of predict.
tflite   LiteRT (ai-edge-litert) on model.tflite, or on a conversion of the Keras model made
         at load time; the batch dimension is resized when the number of faces changes.
predict  `model.predict`, as the reference system called it once per frame (for comparison).

TensorFlow is imported inside these functions only, so importing this module is free.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.ops import cpu_budget

log = logging.getLogger(__name__)


class Engine(Protocol):
    name: str

    def run(self, x: np.ndarray) -> list[np.ndarray]: ...


def load_keras(path: Path) -> Any:
    from shared.ops.tf_gpu import enable_memory_growth  # noqa: PLC0415 - lazily: TensorFlow only for Keras bundles

    enable_memory_growth()  # before the first tensor: TensorFlow would map the whole (shared) GPU memory
    import keras  # noqa: PLC0415

    return keras.models.load_model(path, compile=False)


def keras_output_order(model: Any, heads: list[str]) -> list[int]:
    """Model output index for each head: by output name when they are the head names, else by position."""
    names = [str(n) for n in getattr(model, "output_names", [])]
    if sorted(names) == sorted(heads):
        return [names.index(h) for h in heads]
    return list(range(len(heads)))


def _as_list(out: Any) -> list[Any]:
    if isinstance(out, dict):
        return list(out.values())
    return list(out) if isinstance(out, list | tuple) else [out]


class KerasEngine:
    name = "keras"

    def __init__(self, model: Any, order: list[int]) -> None:
        import tensorflow as tf  # noqa: PLC0415

        self.device = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
        self.order = order
        spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
        # Fixed signature with a free batch dimension: traced once for every number of faces.
        self._call = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = _as_list(self._call(x))
        return [np.asarray(outs[i]) for i in self.order]


class PredictEngine:
    name = "predict"

    def __init__(self, model: Any, order: list[int]) -> None:
        self.model = model
        self.order = order

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = _as_list(self.model.predict(x, verbose=0, batch_size=max(1, len(x))))
        return [np.asarray(outs[i]) for i in self.order]


def convert_to_tflite(model: Any) -> bytes:
    """A TFLite flatbuffer of a Keras model (builtin ops only: LiteRT has no TF-ops delegate)."""
    import tensorflow as tf  # noqa: PLC0415

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its whole signature
        flatbuffer: bytes = converter.convert()
    return flatbuffer


def _output_rank(detail: dict[str, Any]) -> tuple[int, str]:
    # Converted Keras models name outputs "StatefulPartitionedCall:N" or "...output_N": keep N's order.
    numbers = re.findall(r"(\d+)$", detail["name"])
    return (int(numbers[0]) if numbers else 0, detail["name"])


class TFLiteEngine:
    name = "tflite"

    def __init__(self, model_path: Path | None = None, model_content: bytes | None = None,
                 num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

        # LiteRT's default runs the model on one thread; every core cuts a call's latency about
        # in half on 2 cores (MobileNetV2 224 + reference head: 42 -> 23 ms for one face), unless
        # the service's CPU budget (LITERT_THREADS) says otherwise.
        threads = num_threads or cpu_budget.litert_threads(os.cpu_count() or 1)
        self.interpreter = Interpreter(model_path=str(model_path) if model_path else None,
                                       model_content=model_content, num_threads=threads)
        self.interpreter.allocate_tensors()
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"the TFLite model has {len(inputs)} inputs; one is expected")
        self._input = inputs[0]
        self._outputs = sorted(self.interpreter.get_output_details(), key=_output_rank)
        self._batch = int(self._input["shape"][0])
        self.order = list(range(len(self._outputs)))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self._input["shape"][1:])

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in d["shape"][1:]) for d in self._outputs]

    def _resize(self, n: int) -> None:
        self.interpreter.resize_tensor_input(self._input["index"], [n, *self.input_shape])
        self.interpreter.allocate_tensors()
        self._batch = n

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if len(x) != self._batch:
            self._resize(len(x))
        self.interpreter.set_tensor(self._input["index"], x)
        self.interpreter.invoke()
        outs = [self.interpreter.get_tensor(d["index"]) for d in self._outputs]
        return [outs[i].reshape(len(x), -1).copy() for i in self.order]

    def match_outputs(self, reference: list[np.ndarray], x: np.ndarray) -> None:
        """Reorder outputs to the reference (Keras) heads when conversion shuffled them."""
        outs = self.run(x)
        order = []
        for ref in reference:
            diffs = [float(np.max(np.abs(o - ref))) if o.shape == ref.shape else np.inf for o in outs]
            order.append(int(np.argmin(diffs)))
        if sorted(order) == list(range(len(outs))):
            self.order = [self.order[i] for i in order]
