"""TensorFlow on a GPU: memory growth, and which device a Keras model runs on.

TensorFlow maps nearly all GPU memory at start-up unless told otherwise; on a Jetson the GPU
shares the board's memory with the CPU, so the pipeline's other processes would starve (the
2020 system set memory growth for this reason). Training sets it too, so a second process on
the node (TensorBoard, evaluation) can still start. TensorFlow is imported here only when called.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def enable_memory_growth() -> list[str]:
    """Memory growth on every visible GPU; returns their names (empty on a CPU-only machine)."""
    import tensorflow as tf  # noqa: PLC0415

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the GPU was initialised already: the setting stands as it was
            log.debug("memory growth not changed on %s: TensorFlow already initialised it", gpu.name)
    return [gpu.name for gpu in gpus]
