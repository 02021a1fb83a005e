"""Parameter and multiply-add counts, by walking a model's layers.

MACs count the multiply-accumulates of convolutions and dense layers, the
quantity the paper calls FLOPs (Table 1: "3.8 x 10^9 FLOPs" for ResNet-50).
Batch normalisation, additions, activations and pooling are not counted.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from keras_resnet.backbone import recursion_headroom


def _static(model: keras.Model, input_shape: tuple | None) -> keras.Model:
    """``model`` itself, or a fresh copy of its graph with a fixed input size."""
    shape = tuple(model.inputs[0].shape[1:])
    if input_shape is None and None not in shape:
        return model
    if input_shape is None:
        raise ValueError(f"profile: {model.name} has a variable input size {shape}; pass "
                         "input_shape=(height, width, channels), or (channels, height, width) "
                         "for a channels-first model")
    input_shape = tuple(int(d) for d in input_shape)
    if len(model.inputs) != 1 or len(input_shape) != len(shape):
        raise ValueError(f"profile: input_shape={input_shape} does not fit the model input "
                         f"{shape}")
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = (None, *input_shape)
    with recursion_headroom():
        return model.__class__.from_config(config)


def _layer_macs(layer: layers.Layer) -> int:
    if isinstance(layer, keras.Model):
        return sum(_layer_macs(inner) for inner in layer.layers)
    if isinstance(layer, layers.DepthwiseConv2D):
        out = layer.output.shape
        kh, kw = layer.kernel_size
        return math.prod(out[1:]) * kh * kw
    if isinstance(layer, layers.Conv2D):
        out = layer.output.shape
        kh, kw = layer.kernel_size
        cin = layer.input.shape[-1 if layer.data_format == "channels_last" else 1]
        return math.prod(out[1:]) * kh * kw * cin // layer.groups
    if isinstance(layer, layers.Dense):
        inp = layer.input.shape
        return math.prod(inp[1:]) * layer.units
    return 0


def _count(variables) -> int:
    return sum(math.prod(v.shape) for v in variables)


def profile(model: keras.Model, input_shape: tuple | None = None) -> dict[str, int]:
    """Count a model's parameters and multiply-adds for one image.

    Args:
        model: any functional Keras model (nested models are walked too).
        input_shape: (height, width, channels) to count at, or (channels, height,
            width) for a channels-first model; required when the model's own input
            size is variable. The model is then rebuilt from its
            config: Keras' ``get_config`` imports TensorFlow when it is installed.

    Returns:
        ``{"params", "trainable_params", "non_trainable_params", "macs", "flops"}``
        with ``flops = 2 * macs``.
    """
    static = _static(model, input_shape)
    macs = sum(_layer_macs(layer) for layer in static.layers)
    trainable = _count(model.trainable_weights)
    non_trainable = _count(model.non_trainable_weights)
    return {
        "params": trainable + non_trainable,
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
        "macs": int(macs),
        "flops": int(2 * macs),
    }
