"""Tiny real Keras bundles (a few thousand weights) written per the model card contract."""

from __future__ import annotations

from pathlib import Path

from shared.data.model_card import ModelCard

SIZE = 32
SEQUENCE_LENGTH = 3
MULTI_HEADS = ["boredom", "engagement", "confusion", "frustration"]


def _frame_features(keras, x):
    layers = keras.layers
    x = layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    return layers.GlobalAveragePooling2D()(x)


def build(kind: str, directory: Path, affect: bool = True, tflite: bool = False, onnx: bool = False) -> Path:
    import keras

    keras.utils.set_random_seed(7)
    layers = keras.layers
    heads = MULTI_HEADS if kind == "multitask" else ["boredom"]
    if kind == "sequence":
        inputs = keras.Input((SEQUENCE_LENGTH, SIZE, SIZE, 3))
        frame_in = keras.Input((SIZE, SIZE, 3))
        per_frame = keras.Model(frame_in, _frame_features(keras, frame_in))
        x = layers.TimeDistributed(per_frame)(inputs)
        x = layers.GRU(8, unroll=True)(x)
    else:
        inputs = keras.Input((SIZE, SIZE, 3))
        x = _frame_features(keras, inputs)
    outputs = [layers.Dense(4, activation="softmax", name=h)(x) for h in heads]
    model = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0])
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / "model.keras")
    card = ModelCard(name=f"tiny-{kind}", kind=kind, affect=affect, preprocessing="mobilenet_v2", heads=heads,
              input={"size": [SIZE, SIZE], "channels": 3, "color": "rgb",
                     "sequence_length": SEQUENCE_LENGTH if kind == "sequence" else 1},
              invert_heads=["engagement"] if kind == "multitask" else [], trained_on="nothing (test)")
    if onnx:  # as `engagement-train export` writes it: outputs named after the heads, checked on real faces
        from training.export import lfw_batch, write_formats

        write_formats(model, directory, card, lfw_batch(card), "LFW faces", tflite=False)
    card.save(directory)
    if tflite:
        from services.inference.engines import convert_to_tflite

        (directory / "model.tflite").write_bytes(convert_to_tflite(model))
    return directory
