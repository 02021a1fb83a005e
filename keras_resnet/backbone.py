"""Turns a :class:`~keras_resnet.specs.NetSpec` into a ``keras.Model`` with the
keras.applications arguments. Every argument is checked before any layer is built."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from typing import Any

import keras
from keras import layers

from keras_resnet import blocks
from keras_resnet.specs import POOLINGS, SHORTCUTS, NetSpec
from keras_resnet.weights import keras_files, normalisation, resolver, timm
from keras_resnet.weights.resolver import WeightsRecord
from keras_resnet.weights.values import check_values


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


def channel_axis() -> int:
    """Axis of the channels in ``keras.config.image_data_format()``: -1 or 1."""
    return -1 if keras.config.image_data_format() == "channels_last" else 1


def _check_input_shape(spec: NetSpec, input_shape, input_tensor, include_top: bool,
                       weights, model_name: str) -> tuple:
    """The input shape in the current data format: (H, W, C) or (C, H, W)."""
    last = channel_axis() == -1
    order = "(height, width, channels)" if last else "(channels, height, width)"
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        size = spec.default_size if include_top else None
        input_shape = (size, size, 3) if last else (3, size, size)
    try:
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape={input_shape!r} must be a tuple {order}") from None
    if len(input_shape) != 3:
        raise ValueError(f"input_shape={input_shape!r} must have 3 entries {order}, as "
                         f"image_data_format {keras.config.image_data_format()!r} orders them")
    channels = input_shape[2] if last else input_shape[0]
    if channels is None or channels < 1:
        raise ValueError(f"input_shape={input_shape!r}: the channel count must be known and >= 1")
    if weights == "imagenet" and channels != 3:
        raise ValueError(f"input_shape={input_shape!r}: weights='imagenet' needs 3 channels")
    minimum = spec.total_stride
    for d in (input_shape[:2] if last else input_shape[1:]):
        if d is not None and d < minimum:
            raise ValueError(
                f"input_shape={input_shape!r} is too small for {model_name}: height and width "
                f"must be at least {minimum} (its total stride)"
            )
    return input_shape


def _check_options(spec: NetSpec, shortcut, pooling, residual, drop_path_rate, classes,
                   include_preprocessing):
    if not isinstance(include_preprocessing, bool):
        raise ValueError(f"include_preprocessing={include_preprocessing!r} must be True or False")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut={shortcut!r} is not one of 'A', 'B', 'C' (section 3.3)")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of None, 'avg', 'max'")
    if not isinstance(residual, bool):
        raise ValueError(f"residual={residual!r} must be True or False")
    if not isinstance(drop_path_rate, int | float) or not 0 <= drop_path_rate < 1:
        raise ValueError(f"drop_path_rate={drop_path_rate!r} must be a number in [0, 1)")
    if classes is not None and (not isinstance(classes, int) or isinstance(classes, bool)
                                or classes < 1):
        raise ValueError(f"classes={classes!r} must be a positive integer")


def _inputs(shape: tuple, input_tensor: Any):
    if input_tensor is None:
        inputs = layers.Input(shape=shape, name="input_layer")
        return inputs, inputs
    if keras.backend.is_keras_tensor(input_tensor):
        return keras.utils.get_source_inputs(input_tensor), input_tensor
    inputs = layers.Input(tensor=input_tensor, shape=shape)
    return inputs, inputs


@dataclasses.dataclass(frozen=True)
class NetworkArgs:
    """What :func:`build_network` builds besides the spec: keras.applications' arguments
    (``weights_name`` is the keras.applications file stem) and the paper's options
    (shortcut A/B/C, section 3.3; ``residual=False`` for the plain nets, section 4.1)."""

    name: str
    weights_name: str | None = None
    include_top: bool = True
    weights: str | None = None
    input_tensor: Any = None
    input_shape: tuple | None = None
    pooling: str | None = None
    classes: int | None = None
    classifier_activation: str | None = "softmax"
    shortcut: str | None = None
    residual: bool = True
    zero_init_residual: bool = False
    drop_path_rate: float = 0.0
    include_preprocessing: bool = False


def build_network(spec: NetSpec, a: NetworkArgs) -> keras.Model:
    """Build ``spec`` as a functional model; see :func:`keras_resnet.build_resnet`."""
    shortcut = spec.default_shortcut if a.shortcut is None else a.shortcut
    _check_options(spec, shortcut, a.pooling, a.residual, a.drop_path_rate, a.classes,
                   a.include_preprocessing)
    record = resolver.resolve(a.weights, model=a.weights_name)
    _check_weights(record, spec, a, shortcut)
    shape = _check_input_shape(spec, a.input_shape, a.input_tensor, a.include_top, a.weights,
                               a.name)
    channels = shape[-1] if channel_axis() == -1 else shape[0]
    checkpoint, classes = None, a.classes
    if record is not None and record.kind == "timm":  # after every cheap check: may download
        record = resolver.fetch(record)
        checkpoint = timm.open_checkpoint(record)
        classes = timm.check_fits(checkpoint, spec=spec, model_name=a.name,
                                  include_top=a.include_top, classes=classes, channels=channels)
    normalise = normalisation.check(a.include_preprocessing, record, channels=channels)
    classes = spec.default_classes if classes is None else classes

    inputs, img = _inputs(shape, a.input_tensor)
    if normalise is not None:
        img = _rescaling(*normalise, axis=channel_axis())(img)
    opts = blocks.BlockOptions(spec, shortcut, a.residual, a.zero_init_residual, channel_axis())
    x = blocks.stages(blocks.stem(img, opts), opts, a.drop_path_rate)
    x = _head(x, a.include_top, a.pooling, classes, a.classifier_activation)
    with recursion_headroom():
        model = keras.Model(inputs, x, name=a.name)
    if record is not None:
        _load(model, record, checkpoint, a.include_top)
        check_values(model, f"weights={a.weights!r}")
    return model


def _check_weights(record: WeightsRecord | None, spec: NetSpec, a: NetworkArgs,
                   shortcut: str) -> None:
    """Resolved weights against the network to build, before anything is downloaded."""
    if record is None:
        return
    if record.run_dir is not None:
        raise ValueError(f"weights={record.argument!r} is a training run's model dir, whose "
                         "model.keras holds the trainer's model around the network: load it "
                         "with keras_resnet.load_model, or start a run from it with "
                         "keras-resnet-train --weights")
    if record.kind == "timm":
        timm.check_argument(record.argument, spec=spec, model_name=a.name, shortcut=shortcut,
                            residual=a.residual)
        _check_head(record.argument, a.include_top, a.classifier_activation)
    elif record.kind == "keras_applications":
        keras_files.check_imagenet(
            spec=spec, weights_name=a.weights_name, include_top=a.include_top,
            classes=spec.default_classes if a.classes is None else a.classes,
            classifier_activation=a.classifier_activation, shortcut=shortcut,
            residual=a.residual)


def _load(model: keras.Model, record: WeightsRecord, checkpoint: timm.Checkpoint | None,
          include_top: bool) -> None:
    """The loader of the weights' kind."""
    if checkpoint is not None:
        timm.load_into(model, checkpoint, include_top=include_top)
    elif record.kind == "keras_applications":
        keras_files.load_legacy_h5(model, keras_files.fetch_imagenet(record.known.model,
                                                                     include_top))
    else:
        keras_files.load_file(model, record.path)


def _rescaling(scale, offset, *, axis: int) -> layers.Layer:
    """The weights' normalisation as a ``Rescaling`` layer named ``preprocessing`` that
    broadcasts over ``axis``."""
    if axis == 1:  # channels_first: one value per channel, broadcast over (H, W)
        scale = [[[s]] for s in scale]
        offset = [[[o]] for o in offset]
    return layers.Rescaling(scale=list(scale), offset=list(offset), name="preprocessing")


def _head(x: Any, include_top: bool, pooling: str | None, classes: int,
          classifier_activation: str | None) -> Any:
    """keras.applications' top: average pooling and the classifier, or ``pooling`` alone."""
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def _check_head(weights, include_top: bool, classifier_activation) -> None:
    if include_top and classifier_activation not in (None, "softmax"):
        raise ValueError(f"classifier_activation={classifier_activation!r}: with "
                         f"weights={weights!r} only None or 'softmax' is allowed")
