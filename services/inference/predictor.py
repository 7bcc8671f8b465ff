"""The one interface every predictor offers the inference service (baseline, Keras, LiteRT, ...).

The service hands a predictor the students of one batch message and gets back one entry per
student; it never asks which kind of predictor it holds. A new engine (ONNX, TensorRT) is a
class with these members.

    card          the model card (name, kind, labels, sequence length, baseline, affect)
    engine        what runs it, for the metrics and the reports ("keras", "tflite", ...)
    accepts(n)    whether a batch of n crops per student can be used (a sequence model needs
                  exactly its length; the baseline reads the newest crop of any length)
    predict_students(keys, crops, t)
                  crops (students, length, h, w, 3) uint8 BGR, keys (session, stream, student),
                  t the frame's time in seconds (media time for files; state over time, like
                  the baseline's smoothing and each student's neutral pose, follows it), or
                  one time per key when the students come from several frames (streams)
                  -> one {"probs": [4 floats], "level": int, ...} per student; extra entries
                  (multitask heads, the baseline's signals) travel on in the message
    end_stream(session, stream)   forget per-student state of a stream that ended (number dropped)
    evict_idle(seconds)           forget students not seen for that long (they left without eos)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from shared.data.model_card import ModelCard

StudentKey = tuple[str, str, int]  # session, stream, student


class Predictor(Protocol):
    card: ModelCard

    @property
    def engine(self) -> str: ...

    def accepts(self, length: int) -> bool: ...

    def predict_students(self, keys: list[StudentKey], crops: np.ndarray,
                         t: float | Sequence[float] | None = None) -> list[dict[str, Any]]: ...

    def end_stream(self, session: str, stream: str) -> int: ...

    def evict_idle(self, seconds: float) -> int: ...


class Stateless:
    """For predictors that keep nothing per student between frames (every bundle)."""

    def end_stream(self, session: str, stream: str) -> int:
        return 0

    def evict_idle(self, seconds: float) -> int:
        return 0
