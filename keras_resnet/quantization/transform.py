"""A trained float model -> the same network with int8 simulated (:func:`quantize_model`).

- Every ``Conv2D`` followed by a ``BatchNormalization`` becomes one :class:`QuantConv2D`
  whose batch norm is folded into the kernel and bias with its moving statistics, which stay
  frozen (Jacob et al. 2018, sec. 3.2; Krishnamoorthi 2018, sec. 3.2); the batch norm's
  place is kept by an ``Identity`` of the same name. Batch norms no convolution absorbs
  (pre-activation networks) are frozen: they normalise with their moving statistics.
- Every ``Dense`` becomes a :class:`QuantDense` (per-channel weights, 8-bit logits).
- Every tensor an int8 runtime keeps in 8 bits passes through one
  :class:`ActivationQuantizer`: ReLU, Add, pooling and unfolded batch-norm outputs,
  convolution outputs not consumed by a ReLU alone (a ReLU's quantizer covers them, as
  both runtimes fuse the pair), and any other input of a convolution, dense layer or Add.
  Zero padding, max pooling, dropout and identities keep their input's grid.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
from keras import tree

from keras_resnet.qat_schemes import DEFAULT_QAT_SCHEME, QAT_SCHEMES, QatScheme
from keras_resnet.quantization.layers import ActivationQuantizer, QuantConv2D, QuantDense

#: Layers whose output lies on their input's grid.
_PASSTHROUGH = (keras.layers.ZeroPadding2D, keras.layers.MaxPooling2D, keras.layers.Dropout,
                keras.layers.Identity, keras.layers.Flatten, keras.layers.Reshape)
#: Layers whose output an int8 runtime stores on a grid of its own.
_REQUANTIZED = (keras.layers.Add, keras.layers.GlobalAveragePooling2D,
                keras.layers.AveragePooling2D, keras.layers.BatchNormalization)


def _is_relu(layer: Any) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    return (isinstance(layer, keras.layers.Activation)
            and getattr(layer.activation, "__name__", "") == "relu")


def _consumers(layer: Any) -> list[Any]:
    return [node.operation for node in getattr(layer, "_outbound_nodes", [])]


def _folded_batch_norm(layer: Any) -> Any:
    """The batch norm that alone consumes ``layer`` (a Conv2D) on its channel axis."""
    users = _consumers(layer)
    if len(users) != 1 or not isinstance(users[0], keras.layers.BatchNormalization):
        return None
    bn = users[0]
    channel_axis = 1 if layer.data_format == "channels_first" else 3
    return bn if bn.axis % 4 == channel_axis else None


def _feeds_relu_only(layer: Any) -> bool:
    users = _consumers(layer)
    return len(users) == 1 and _is_relu(users[0])


class _Rewriter:
    """The clone and call functions of ``keras.models.clone_model`` for one scheme."""

    def __init__(self, scheme: QatScheme) -> None:
        self.scheme = scheme
        self.originals: dict[int, tuple[Any, Any]] = {}  # id(new layer) -> (new, old)
        self.on_grid: set[int] = set()  # ids of tensors already rounded to 8 bits
        self.rounded: dict[int, Any] = {}  # id(tensor) -> its quantized version

    def clone(self, layer: Any) -> Any:
        new = self._replacement(layer)
        # A batch norm no convolution absorbs (pre-activation networks) normalises with its
        # moving statistics, as the int8 file will: ranges observed under batch statistics
        # would not fit the exported network.
        new.trainable = layer.trainable and not isinstance(new, keras.layers.BatchNormalization)
        self.originals[id(new)] = (new, layer)
        return new

    def _replacement(self, layer: Any) -> Any:
        qmax, symmetric = self.scheme.weight_qmax, self.scheme.symmetric_activations
        if isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
            bn = _folded_batch_norm(layer)
            quantize_output = not _feeds_relu_only(bn or layer)
            return QuantConv2D(layer.get_config(), bn.get_config() if bn else None, qmax,
                               quantize_output, symmetric, name=layer.name)
        if isinstance(layer, keras.layers.BatchNormalization) and self._is_folded(layer):
            return keras.layers.Identity(name=layer.name)
        if type(layer) is keras.layers.Dense:
            return QuantDense(layer.get_config(), qmax, symmetric, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    @staticmethod
    def _is_folded(bn: Any) -> bool:
        producers = [t._keras_history.operation for node in bn._inbound_nodes
                     for t in node.input_tensors]
        return (len(producers) == 1 and type(producers[0]) is keras.layers.Conv2D
                and _folded_batch_norm(producers[0]) is bn)

    def call(self, layer: Any, *args: Any, **kwargs: Any) -> Any:
        old = self.originals.get(id(layer), (layer, layer))[1]
        if layer is not old:  # a replacement takes only what its own call accepts
            accepted = inspect.signature(layer.call).parameters
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        if isinstance(layer, (QuantConv2D, QuantDense, keras.layers.Add)):
            args, kwargs = tree.map_structure(self._rounded, (args, kwargs))
        inputs = [t for t in tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        out = layer(*args, **kwargs)
        if _is_relu(old) or (isinstance(old, _REQUANTIZED) and not isinstance(
                layer, keras.layers.Identity) and not _feeds_relu_only(old)):
            out = self._quantizer(f"{layer.name}_quant")(out)
            self.on_grid.add(id(out))
        elif self._keeps_grid(layer, inputs):
            self.on_grid.add(id(out))
        return out

    def _keeps_grid(self, layer: Any, inputs: list[Any]) -> bool:
        if isinstance(layer, QuantConv2D):
            return layer.quantize_output
        return (isinstance(layer, _PASSTHROUGH) and bool(inputs)
                and all(id(t) in self.on_grid for t in inputs))

    def _quantizer(self, name: str) -> ActivationQuantizer:
        return ActivationQuantizer(self.scheme.symmetric_activations, name=name)

    def _rounded(self, tensor: Any) -> Any:
        if not isinstance(tensor, keras.KerasTensor) or id(tensor) in self.on_grid:
            return tensor
        if id(tensor) not in self.rounded:
            name = f"{tensor._keras_history.operation.name}_quant"
            rounded = self._quantizer(name)(tensor)
            self.on_grid.add(id(rounded))
            self.rounded[id(tensor)] = rounded
        return self.rounded[id(tensor)]


def quantize_model(model: keras.Model, scheme: str = DEFAULT_QAT_SCHEME) -> keras.Model:
    """The quantization-aware copy of a functional ``model`` (nested functional models
    too), with ``model``'s trained weights; ``scheme`` is a key of :data:`QAT_SCHEMES`."""
    if scheme not in QAT_SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not one of {', '.join(QAT_SCHEMES)}")
    rewriter = _Rewriter(QAT_SCHEMES[scheme])
    quantized = keras.models.clone_model(model, clone_function=rewriter.clone,
                                         call_function=rewriter.call, recursive=True)
    for new, old in rewriter.originals.values():
        _copy_weights(old, new)
    return quantized


def _copy_weights(old: Any, new: Any) -> None:
    """``old``'s trained values into its replacement."""
    if isinstance(new, QuantConv2D):
        values = [old.kernel, old.bias if old.use_bias else keras.ops.zeros((old.filters,))]
        bn = _folded_batch_norm(old) if new.batch_norm else None
        if bn is not None:
            ones, zeros = keras.ops.ones((old.filters,)), keras.ops.zeros((old.filters,))
            values += [bn.gamma if bn.scale else ones, bn.beta if bn.center else zeros,
                       bn.moving_mean, bn.moving_variance]
        new.set_weights([keras.ops.convert_to_numpy(v) for v in values]
                        + new.get_weights()[len(values):])
    elif isinstance(new, QuantDense):
        bias = old.bias if old.use_bias else keras.ops.zeros((old.units,))
        new.set_weights([keras.ops.convert_to_numpy(v) for v in (old.kernel, bias)]
                        + new.get_weights()[2:])
    elif isinstance(new, (keras.Model, keras.layers.Identity)):
        return
    elif old.weights:
        new.set_weights(old.get_weights())
        if isinstance(new, keras.layers.Normalization):
            new.finalize_state()  # it snapshots its weights into constants
