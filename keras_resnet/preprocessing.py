"""Input preprocessing that matches each reference weight set."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras.applications import imagenet_utils

MODES = ("caffe", "tf", "torch", "none")


def preprocess_input(x, mode: str = "caffe", *, weights: Any = None,
                     data_format: str | None = None):
    """Preprocess RGB images in [0, 255].

    ``"caffe"``: RGB to BGR minus the ImageNet mean (keras.applications ResNet,
    the paper's per-pixel mean subtraction); ``"tf"``: scale to [-1, 1] (ResNetV2);
    ``"torch"``: scale to [0, 1] and standardise; ``"none"``: unchanged.
    ``keras_resnet.model_info(name)["preprocessing"]`` names the mode a model expects.

    ``weights`` (a name of :func:`keras_resnet.list_weights`, or a ``.safetensors``
    file with timm's config.json beside it) overrides ``mode`` with that weight set's
    own normalisation. ``data_format`` defaults to ``keras.config.image_data_format()``.
    """
    data_format = data_format or keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format={data_format!r} is not 'channels_last' or "
                         "'channels_first'")
    if weights is not None:
        return _by_weights(x, weights, data_format)
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {', '.join(MODES)}")
    if mode == "none":
        return x
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode=mode)


def _by_weights(x, weights: Any, data_format: str):
    from keras_resnet.weights import normalisation, table

    info = table.find(weights) if isinstance(weights, str) else None
    if info is not None and info.preprocessing == "caffe":
        return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")
    scale, offset = normalisation.affine_for(weights)
    shape = (-1,) if data_format == "channels_last" else (-1, 1, 1)
    scale = np.reshape(np.asarray(scale, "float32"), shape)
    offset = np.reshape(np.asarray(offset, "float32"), shape)
    if isinstance(x, np.ndarray):
        return x.astype("float32") * scale + offset
    return keras.ops.cast(x, "float32") * scale + offset
