"""The layers of quantization-aware training: int8 simulated in the forward pass, with the
straight-through estimator (Bengio et al. 2013) for the rounding.

On TensorFlow the activation quantizers are ``tf.quantization.fake_quant_with_min_max_vars``
ops, which the TFLite converter and tf2onnx read as the int8 ranges: files exported from a
quantization-aware model need no calibration. The schemes (:data:`QAT_SCHEMES`) mirror the
exporter's int8 ONNX schemes of the same names.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_resnet.qat_schemes import DEFAULT_QAT_SCHEME, QAT_SCHEMES, QatScheme  # noqa: F401

PACKAGE = "keras_resnet"
#: Activation ranges' moving-average momentum while observing.
OBSERVER_MOMENTUM = 0.99
_TINY = 1e-8


def fake_quant(x: Any, lo: Any, hi: Any) -> Any:
    """``x`` rounded to the 256-level grid over ``[lo, hi]`` (nudged so that 0 is on the
    grid), with a straight-through gradient inside the range and none outside: Keras'
    ``fake_quant_with_min_max_vars``, which on TensorFlow is the
    ``tf.quantization.fake_quant_with_min_max_vars`` op the TFLite converter and tf2onnx
    read as the tensor's int8 range."""
    return keras.quantizers.fake_quant_with_min_max_vars(x, lo, hi, num_bits=8)


def quantize_weights(w: Any, qmax: int, reduce_axes: tuple[int, ...]) -> Any:
    """Per-channel symmetric rounding of ``w`` to ``qmax`` levels each side of 0, the
    channel's scale ``max|w| / qmax``; the gradient passes straight through."""
    scale = ops.maximum(ops.max(ops.abs(w), axis=reduce_axes, keepdims=True) / qmax, _TINY)
    rounded = ops.clip(ops.round(w / ops.stop_gradient(scale)), -qmax, qmax)
    return w + ops.stop_gradient(rounded * scale - w)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ActivationQuantizer(keras.layers.Layer):
    """Observes a tensor's range (moving min/max, 0 always inside) while ``observing`` is 1
    and training, and rounds the tensor to 8 bits over that range."""

    def __init__(self, symmetric: bool = False, momentum: float = OBSERVER_MOMENTUM,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.symmetric, self.momentum = bool(symmetric), float(momentum)

    def build(self, input_shape: Any) -> None:
        def state(name: str, value: float) -> Any:
            return self.add_weight(shape=(), name=name, trainable=False, autocast=False,
                                   initializer=keras.initializers.Constant(value),
                                   aggregation="mean")

        self.range_min, self.range_max = state("range_min", 0.0), state("range_max", 0.0)
        self.observing, self.seen = state("observing", 1.0), state("seen", 0.0)

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = ops.cast(x, "float32")
        if training:
            self._observe(x)
        lo, hi = self.limits()
        return fake_quant(x, lo, hi)

    def _observe(self, x: Any) -> None:
        batch_min = ops.minimum(ops.min(ops.stop_gradient(x)), 0.0)
        batch_max = ops.maximum(ops.max(ops.stop_gradient(x)), 0.0)
        first = ops.cast(self.seen == 0.0, "float32")
        keep = (1.0 - first) * self.momentum
        on = self.observing
        new_min = keep * self.range_min + (1.0 - keep) * batch_min
        new_max = keep * self.range_max + (1.0 - keep) * batch_max
        self.range_min.assign(on * new_min + (1.0 - on) * self.range_min)
        self.range_max.assign(on * new_max + (1.0 - on) * self.range_max)
        self.seen.assign(self.seen + on)

    def limits(self) -> tuple[Any, Any]:
        """The range the tensor is rounded over: ``[min, max]``, or for symmetric
        activations ``[-m, m * 127/128]`` so that the zero point is 0 in int8."""
        lo, hi = ops.minimum(self.range_min, 0.0), ops.maximum(self.range_max, _TINY)
        if self.symmetric:
            m = ops.maximum(-lo, hi)
            return -m, m * (127.0 / 128.0)
        return lo, hi

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "symmetric": self.symmetric, "momentum": self.momentum}

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


def _add_state(layer: keras.layers.Layer, name: str, shape: tuple[int, ...],
               value: float = 0.0, trainable: bool = True) -> Any:
    return layer.add_weight(shape=shape, name=name, trainable=trainable, autocast=False,
                            initializer=keras.initializers.Constant(value))


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantConv2D(keras.layers.Layer):
    """A convolution with its batch norm folded in (moving statistics frozen) and its
    folded kernel rounded per output channel; optionally its output rounded to 8 bits.

    ``conv`` is the ``Conv2D`` config; ``batch_norm`` the ``BatchNormalization`` config or
    None. Weights: ``kernel``, ``bias`` (zeros when the conv had none), then the batch
    norm's ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``.
    """

    def __init__(self, conv: dict[str, Any], batch_norm: dict[str, Any] | None = None,
                 weight_qmax: int = 127, quantize_output: bool = True,
                 symmetric: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conv, self.batch_norm = dict(conv), (dict(batch_norm) if batch_norm else None)
        self.weight_qmax, self.quantize_output = int(weight_qmax), bool(quantize_output)
        self.symmetric = bool(symmetric)
        self.output_quantizer = (ActivationQuantizer(symmetric, name="output_quantizer")
                                 if self.quantize_output else None)

    def build(self, input_shape: Any) -> None:
        filters, kernel = self.conv["filters"], tuple(self.conv["kernel_size"])
        channel_axis = 1 if self.conv.get("data_format") == "channels_first" else -1
        groups = self.conv.get("groups", 1)
        shape = (*kernel, input_shape[channel_axis] // groups, filters)
        self.kernel = _add_state(self, "kernel", shape)
        self.bias = _add_state(self, "bias", (filters,))
        if self.batch_norm:
            self.gamma = _add_state(self, "gamma", (filters,), 1.0)
            self.beta = _add_state(self, "beta", (filters,))
            self.moving_mean = _add_state(self, "moving_mean", (filters,), trainable=False)
            self.moving_variance = _add_state(self, "moving_variance", (filters,), 1.0, False)
        if self.output_quantizer is not None:
            self.output_quantizer.build(None)

    def folded(self) -> tuple[Any, Any]:
        """Kernel and bias with the batch norm folded in: ``w * g / sqrt(v + eps)`` and
        ``(b - mean) * g / sqrt(v + eps) + beta``."""
        if not self.batch_norm:
            return self.kernel, self.bias
        factor = self.gamma / ops.sqrt(self.moving_variance + self.batch_norm["epsilon"])
        return self.kernel * factor, (self.bias - self.moving_mean) * factor + self.beta

    def call(self, x: Any, training: bool | None = None) -> Any:
        kernel, bias = self.folded()
        kernel = quantize_weights(kernel, self.weight_qmax, (0, 1, 2))
        data_format = self.conv.get("data_format") or "channels_last"
        y = ops.conv(ops.cast(x, "float32"), kernel, strides=self.conv["strides"],
                     padding=self.conv["padding"], data_format=data_format,
                     dilation_rate=self.conv["dilation_rate"])
        y = y + (ops.reshape(bias, (1, -1, 1, 1)) if data_format == "channels_first" else bias)
        if self.output_quantizer is not None:
            y = self.output_quantizer(y, training=training)
        return y

    def compute_output_shape(self, input_shape: Any) -> Any:
        return keras.layers.Conv2D.from_config(self.conv).compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "conv": self.conv, "batch_norm": self.batch_norm,
                "weight_qmax": self.weight_qmax, "quantize_output": self.quantize_output,
                "symmetric": self.symmetric}


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantDense(keras.layers.Layer):
    """A dense layer with per-output-unit rounded weights and 8-bit logits, then the
    original layer's activation (softmax stays float)."""

    def __init__(self, dense: dict[str, Any], weight_qmax: int = 127, symmetric: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense, self.weight_qmax, self.symmetric = dict(dense), int(weight_qmax), symmetric
        self.logits_quantizer = ActivationQuantizer(symmetric, name="logits_quantizer")
        self.activation = keras.activations.get(self.dense.get("activation"))

    def build(self, input_shape: Any) -> None:
        units = self.dense["units"]
        self.kernel = _add_state(self, "kernel", (input_shape[-1], units))
        self.bias = _add_state(self, "bias", (units,))
        self.logits_quantizer.build(None)

    def call(self, x: Any, training: bool | None = None) -> Any:
        kernel = quantize_weights(self.kernel, self.weight_qmax, (0,))
        logits = ops.matmul(ops.cast(x, "float32"), kernel) + self.bias
        return self.activation(self.logits_quantizer(logits, training=training))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], self.dense["units"])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dense": self.dense, "weight_qmax": self.weight_qmax,
                "symmetric": self.symmetric}
