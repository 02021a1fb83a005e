"""Quantization-aware training for Keras 3 conv nets: int8 simulated in the forward pass.

>>> from keras_resnet.quantization import quantize_model, freeze_observers
>>> qat = quantize_model(trained, "u8s8-7bit")   # batch norm folded, int8 simulated
>>> qat.fit(...)                                   # ranges observed, then
>>> freeze_observers(qat)                          # ... frozen for the rest
"""

from keras_resnet.quantization.layers import (
    DEFAULT_QAT_SCHEME,
    QAT_SCHEMES,
    ActivationQuantizer,
    QatScheme,
    QuantConv2D,
    QuantDense,
    fake_quant,
    quantize_weights,
)
from keras_resnet.quantization.state import (
    freeze_observers,
    is_quantized,
    qat_scheme_of,
    quantizers,
)
from keras_resnet.quantization.transform import quantize_model

__all__ = [
    "DEFAULT_QAT_SCHEME", "QAT_SCHEMES", "ActivationQuantizer", "QatScheme", "QuantConv2D",
    "QuantDense", "fake_quant", "freeze_observers", "is_quantized", "qat_scheme_of",
    "quantize_model", "quantize_weights", "quantizers",
]
