"""Which model made the predictions: what every `predictions` and `update` message carries
(shared/bus/messages.py) and what the report says (shared/data/report_doc.py), one Struct for both.

Inference fills every field from the bundle's card and its engine. A field a message leaves out
takes its default, which is what every reader made of a missing key before ("" for text, false,
no labels): a model is known once it has a name (the aggregator's store and journal keep a
frame's model only then). In a report every field is written, in this order, as the file always had.
"""

from __future__ import annotations

import msgspec


class ModelInfo(msgspec.Struct, kw_only=True):
    name: str = ""
    kind: str = ""  # the card's kind: frame, sequence or multitask
    baseline: bool = False  # the attention baseline, not trained on engagement (said on every page)
    affect: bool = False  # trained on affect labels: refused under EU_AI_ACT_MODE
    labels: list[str] = []  # the four levels' names; none: the product's own (shared/data/levels.py)
    engine: str = ""
    device: str = ""  # where the engine computes: cpu, gpu, cuda, tensorrt
