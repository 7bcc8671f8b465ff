"""What a MODEL setting names, read from the card JSON only (launcher and inference share it).

No TensorFlow here: the launcher calls `sequence_length_for` to configure the sequencer,
inference calls `resolve_bundle` to find the bundle.

    python -m shared.ops.card_info <MODEL>     prints the sequence length
"""

from __future__ import annotations

import sys
from pathlib import Path

from shared.data.model_card import ModelCard
from shared.ops import config

BASELINE = "baseline"


def resolve_bundle(model: str, models_dir: str | Path | None = None) -> Path:
    """A bundle path as given, or else relative to MODELS_DIR (`MODEL=my-bundle`)."""
    path = Path(model)
    if path.is_dir() or path.is_absolute():
        return path
    base = Path(models_dir) if models_dir else config.models_dir()
    return base / model if (base / model).is_dir() else path


def sequence_length_for(model: str, models_dir: str | Path | None = None) -> int:
    """Crops per sample the model takes: 1 for the baseline and frame/multitask models."""
    if model == BASELINE:
        return 1
    bundle = resolve_bundle(model, models_dir)
    return ModelCard.load(bundle).sequence_length


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m shared.ops.card_info <MODEL: baseline | bundle dir>", file=sys.stderr)
        return 2
    try:
        print(sequence_length_for(argv[0]))
    except ValueError as exc:  # CardError
        print(f"card_info: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
