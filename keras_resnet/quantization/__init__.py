"""Quantization-aware training for Keras 3 conv nets: int8 simulated in the forward pass.

>>> from keras_resnet.quantization import quantize_model, freeze_observers
>>> qat = quantize_model(trained, "u8s8-7bit")   # batch norm folded, int8 simulated
>>> qat.fit(...)                                   # ranges observed, then
>>> freeze_observers(qat)                          # ... frozen for the rest

The schemes (:data:`QAT_SCHEMES`) load without Keras; the layers and the rewrite load on
first use, so a command line can check its flags before TensorFlow starts. Loading a
quantization-aware ``.keras`` file needs :mod:`keras_resnet.quantization.layers` imported
(``keras_resnet.load_model`` does it).
"""

import importlib
from typing import Any

from .schemes import DEFAULT_QAT_SCHEME, QAT_SCHEMES, QatScheme

#: Public name -> the submodule defining it (imported on first use).
_SOURCES = {
    **dict.fromkeys(("ActivationQuantizer", "QuantConv2D", "QuantDense", "fake_quant",
                     "quantize_weights"), "layers"),
    **dict.fromkeys(("freeze_observers", "is_quantized", "qat_scheme_of", "quantizers"),
                    "state"),
    "quantize_model": "transform",
}

__all__ = ["DEFAULT_QAT_SCHEME", "QAT_SCHEMES", "QatScheme", *sorted(_SOURCES)]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value
    return value
