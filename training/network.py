"""A network built in code (a functional or Sequential ``keras.Model`` classifier) as the
trainer trains it.

* Output: the last layer's activation decides the loss. A softmax (a ``Softmax`` layer, or a
  layer with ``activation="softmax"``) is trained with cross-entropy on probabilities; any
  other output is taken as logits (``from_logits=True``).
* Placement: the network is cloned inside the strategy's scope (its variables must live
  there) and starts from the given network's weights; the trained clone is what
  :func:`keras_resnet.training.train` returns and ``model.keras`` holds.
* Identity: a SHA-256 of its structure (layer types, their configurations without names,
  weight shapes, in order) and its output kind; a model dir holding another network is
  refused. ``network.json`` in the model dir keeps its full Keras configuration.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from keras_resnet.training.errors import UsageError

NETWORK_FILE = "network.json"
_NAME_KEYS = ("name", "seed")


def _without_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items() if k not in _NAME_KEYS}
    if isinstance(value, list | tuple):
        return [_without_names(v) for v in value]
    return value


def _output_layer(model: Any) -> Any:
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0] if history else model.layers[-1]


def output_kind(model: Any) -> str:
    """``softmax`` when the network ends in a softmax, else ``logits``."""
    import keras

    layer = _output_layer(model)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", str(activation))
    return "softmax" if name == "softmax" else "logits"


@dataclass
class CodeNetwork:
    """A checked network built in code."""

    model: Any
    input_size: int
    classes: int
    output: str  # softmax | logits
    sha256: str
    trained: Any = None  # the clone being trained

    @classmethod
    def check(cls, model: Any) -> CodeNetwork:
        """The network's input size, classes, output kind and fingerprint; UsageError for a
        network the trainer cannot train."""
        if not getattr(model, "built", False) or not getattr(model, "inputs", None):
            raise UsageError("model: build the network first (functional or Sequential "
                             "with an input shape): it has no inputs")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise UsageError(f"model: one image input and one class output are needed, "
                             f"{model.name} has {len(model.inputs)} and {len(model.outputs)}")
        shape, out = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
        if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
            raise UsageError(f"model: the input must be square RGB images (None, S, S, 3), "
                             f"{model.name} takes {shape}")
        if len(out) != 2 or not out[1] or out[1] < 2:
            raise UsageError(f"model: the output must be (None, classes) with classes >= 2, "
                             f"{model.name} gives {out}")
        return cls(model, int(shape[1]), int(out[1]), output_kind(model), _fingerprint(model))

    def identity(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "output": self.output}

    def build(self, contract: Any) -> Any:
        """Inside the strategy's scope: the clone (starting from the network's weights),
        behind a layer turning the pipelines' pixels 0..255 into the data's contract."""
        import keras

        try:
            clone = keras.models.clone_model(self.model)
        except Exception as exc:
            raise UsageError(f"model: {self.model.name} cannot be cloned (train() takes "
                             f"functional or Sequential networks): {str(exc).splitlines()[0]}"
                             ) from None
        clone.set_weights(self.model.get_weights())
        self.trained = clone
        if contract is None or contract.is_raw_pixels:  # None: a source name, pixels 0..255
            return clone
        size = self.input_size
        inputs = keras.Input((size, size, 3), dtype="float32", name="pixels")
        x = contract.layer(to_data=True, name="to_data_contract")(inputs)
        return keras.Model(inputs, clone(x), name=f"{clone.name}_training")

    def config_json(self) -> str:
        """The network's Keras configuration (``network.json``)."""
        import keras

        return json.dumps(keras.saving.serialize_keras_object(self.model), indent=1,
                          default=str)


def _fingerprint(model: Any) -> str:
    parts = []
    for layer in model.layers:
        try:
            config = _without_names(layer.get_config())
        except Exception:  # a layer without a config: its type and weights still count
            config = None
        parts.append([type(layer).__name__, config, [list(w.shape) for w in layer.weights]])
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
