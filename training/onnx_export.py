"""model.onnx for ONNX Runtime (CPU, CUDA, TensorRT on the Jetson), checked against Keras on real crops.

Keras 3's own `model.export(path, format="onnx")` is used rather than calling tf2onnx directly:
on the TensorFlow backend it traces the model's call with a free batch dimension and hands the
concrete function to `tf2onnx.convert.from_function` (the path that works with Keras 3;
`tf2onnx.convert.from_keras` needs Keras 2 internals), and it patches tf2onnx for NumPy 2.
The graph's outputs are then renamed after the card's heads, so an engine without TensorFlow
maps outputs to heads by name.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

OPSET = 17  # ONNX Runtime >= 1.14 and TensorRT 8.6/10 (JetPack 6) all read opset 17


def to_onnx(model: Any, path: Path, heads: list[str], order: list[int]) -> None:
    """Write `model` as ONNX at `path`, output j named heads[j] (model output order[j])."""
    import onnx  # noqa: PLC0415 - training extra only
    import tensorflow as tf  # noqa: PLC0415

    path = Path(path)
    # One float32 input with a free batch dimension (every number of faces), named for engines.
    signature = [tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name="input")]
    with contextlib.redirect_stdout(io.StringIO()):  # tf2onnx prints its whole graph summary
        model.export(str(path), format="onnx", verbose=False, opset_version=OPSET, input_signature=signature)
    graph = onnx.load(str(path))
    name_outputs(graph, heads, order)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


def name_outputs(graph: Any, heads: list[str], order: list[int]) -> None:
    """Rename the graph outputs ("Identity:0", ...) after the heads, through Identity nodes."""
    from onnx import helper  # noqa: PLC0415

    outputs = list(graph.graph.output)
    if len(outputs) != len(heads):
        raise ValueError(f"the ONNX graph has {len(outputs)} outputs for {len(heads)} heads {heads}")
    renamed = []
    for head, index in zip(heads, order, strict=True):
        old = outputs[index]
        graph.graph.node.append(helper.make_node("Identity", [old.name], [head], name=f"head_{head}"))
        new = type(old)()
        new.CopyFrom(old)
        new.name = head
        renamed.append(new)
    del graph.graph.output[:]
    graph.graph.output.extend(renamed)


def onnx_outputs(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs by name of model.onnx on a prepared batch, on ONNX Runtime's CPU provider."""
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: x}), strict=True))
