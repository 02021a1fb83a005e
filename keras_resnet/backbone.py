"""Turns a :class:`~keras_resnet.specs.NetSpec` into a ``keras.Model`` with the
keras.applications arguments. Every argument is checked before any layer is built."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import keras
from keras import layers

from . import blocks
from . import weights as weights_lib
from .specs import POOLINGS, SHORTCUTS, NetSpec


@contextlib.contextmanager
def recursion_headroom(frames: int = 20_000) -> Iterator[None]:
    """Keras walks a functional graph recursively; ResNet-1202's ~3,600 operations need
    more frames than Python's default limit of 1,000 allows."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, frames))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _check_input_shape(spec: NetSpec, input_shape, input_tensor, include_top: bool,
                       weights, model_name: str) -> tuple:
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("keras_resnet builds channels_last models only; set "
                         "keras.config.set_image_data_format('channels_last')")
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        size = spec.default_size if include_top else None
        input_shape = (size, size, 3)
    try:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape={input_shape!r} must be a tuple (height, width, "
                         "channels)") from None
    if len(input_shape) != 3:
        raise ValueError(f"input_shape={input_shape!r} must have 3 entries (height, width, "
                         "channels), channels last")
    channels = input_shape[2]
    if channels is None or channels < 1:
        raise ValueError(f"input_shape={input_shape!r}: the channel count must be known and >= 1")
    if weights == "imagenet" and channels != 3:
        raise ValueError(f"input_shape={input_shape!r}: weights='imagenet' needs 3 channels")
    minimum = spec.total_stride
    for d in input_shape[:2]:
        if d is not None and d < minimum:
            raise ValueError(
                f"input_shape={input_shape!r} is too small for {model_name}: height and width "
                f"must be at least {minimum} (its total stride)"
            )
    return input_shape


def build_network(
    spec: NetSpec,
    *,
    include_top: bool = True,
    weights: str | None = None,
    input_tensor: Any = None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    classes: int | None = None,
    classifier_activation: str | None = "softmax",
    name: str = "resnet",
    shortcut: str | None = None,
    residual: bool = True,
    zero_init_residual: bool = False,
    drop_path_rate: float = 0.0,
    weights_name: str | None = None,
) -> keras.Model:
    """Build ``spec`` as a functional model; see :func:`keras_resnet.build_resnet`."""
    shortcut = spec.default_shortcut if shortcut is None else shortcut
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut={shortcut!r} is not one of 'A', 'B', 'C' (section 3.3)")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of None, 'avg', 'max'")
    if not isinstance(residual, bool):
        raise ValueError(f"residual={residual!r} must be True or False")
    if not isinstance(drop_path_rate, int | float) or not 0 <= drop_path_rate < 1:
        raise ValueError(f"drop_path_rate={drop_path_rate!r} must be a number in [0, 1)")
    classes = spec.default_classes if classes is None else classes
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"classes={classes!r} must be a positive integer")
    weights_lib.check_weights_argument(
        weights, spec=spec, weights_name=weights_name, include_top=include_top,
        classes=classes, classifier_activation=classifier_activation, shortcut=shortcut,
        residual=residual,
    )
    shape = _check_input_shape(spec, input_shape, input_tensor, include_top, weights, name)

    if input_tensor is None:
        inputs = img = layers.Input(shape=shape, name="input_layer")
    elif keras.backend.is_keras_tensor(input_tensor):
        img = input_tensor
        inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        inputs = img = layers.Input(tensor=input_tensor, shape=shape)

    opts = blocks.BlockOptions(spec, shortcut, residual, zero_init_residual)
    x = blocks.stem(img, opts)
    x = blocks.stages(x, opts, drop_path_rate)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    with recursion_headroom():
        model = keras.Model(inputs, x, name=name)
    if weights is not None:
        weights_lib.load_into(model, weights, weights_name=weights_name, include_top=include_top)
    return model
