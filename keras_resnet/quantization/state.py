"""What a quantization-aware model holds: its quantizers, their observation, its scheme."""

from __future__ import annotations

import keras

from keras_resnet.qat_schemes import scheme_named_by
from keras_resnet.quantization.layers import ActivationQuantizer, QuantConv2D, QuantDense


def quantizers(model: keras.Model) -> list[ActivationQuantizer]:
    """Every activation quantizer of ``model``, nested layers included."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, ActivationQuantizer)]


def is_quantized(model: keras.Model) -> bool:
    """Whether ``model`` was made by :func:`quantize_model`."""
    return bool(quantizers(model))


def freeze_observers(model: keras.Model, frozen: bool = True) -> int:
    """Stop (or restart) every activation range's observation; returns how many."""
    found = quantizers(model)
    for quantizer in found:
        quantizer.observing.assign(0.0 if frozen else 1.0)
    return len(found)


def qat_scheme_of(model: keras.Model) -> str | None:
    """The :data:`QAT_SCHEMES` key ``model`` simulates, read from its layers; None for a
    model without quantization."""
    weighted = [layer for layer in model._flatten_layers(include_self=False)
                if isinstance(layer, (QuantConv2D, QuantDense))]
    if not weighted:
        return None
    layer = weighted[0]
    return scheme_named_by(layer.weight_qmax, layer.symmetric, f"layer {layer.name!r}")
